"""The repository: opens keys and config, loads the index, reads and writes blobs and snapshots.

Write order is restic's: packs, then the index naming them (:meth:`Repository.flush`), then
the snapshot (:meth:`Repository.save_snapshot` flushes first). A snapshot is therefore listed
only once everything it references is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TypeVar

from airflow_backup.errors import (
    BackupError,
    ConfigError,
    IntegrityError,
    NotFound,
    RepositoryNotFound,
)
from airflow_backup.jsontypes import JSONValue
from airflow_backup.repository import keys as keyfiles
from airflow_backup.repository.config import CONFIG_HANDLE, RepoConfig, load_config, save_config
from airflow_backup.repository.config import new_config as make_config
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.index import (
    Index,
    ParsedIndex,
    decode_index,
    encode_index,
    parse_index_file,
)
from airflow_backup.repository.locks import RepoLock
from airflow_backup.repository.packer import DEFAULT_PACK_SIZE, PackWriter
from airflow_backup.repository.packs import BlobType, PackedBlob
from airflow_backup.repository.scratch import PLAIN, scratch
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node, decode_tree, encode_tree
from airflow_backup.repository.unpacked import (
    decompress,
    decompress_sized,
    load_json,
    save_json,
)
from airflow_backup.storage.base import (
    FileType,
    Handle,
    Storage,
    io_workers,
    small_files_apart,
)
from airflow_backup.storage.cache import tree_pack_storage
from airflow_backup.storage.wrapper import DelegatingStorage

__all__ = ["Repository"]

_log = logging.getLogger(__name__)

# restic flushes an index file after 50,000 blobs; so do we, to keep index files small.
INDEX_MAX_BLOBS = 50_000

T = TypeVar("T")


def _in_order(storage: Storage, fn: Callable[[str], T], names: Sequence[str]
              ) -> Generator[T, None, None]:
    """Yield ``fn(name)`` for each of ``names`` in order, the calls run on up to
    ``io_workers(storage)`` threads (metadata files one by one cost a round trip each on
    an object store). A call that raises raises here, at its turn, as the same loop run
    serially would; calls not started by then are cancelled.

    At most twice as many results as threads wait to be taken, so a slow consumer does not
    hold every decoded file at once. Close the iterator if it is left early.

    Where the store keeps small files apart (a local file system: reading a metadata file
    costs no wait, and decrypting and parsing it hold the GIL), the calls run one after
    another on the caller's thread: threads made 10,000 snapshot files take 1.1 s instead
    of 0.7 s, and a 1M-blob index 2.0 s instead of 1.7 s (docs/performance.md).
    """
    workers = min(io_workers(storage), len(names))
    if workers <= 1 or small_files_apart(storage, workers):
        for name in names:
            yield fn(name)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="metadata") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for name in names:
                pending.append(pool.submit(fn, name))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class _KeysRead(DelegatingStorage):
    """``inner``, keeping a copy of every whole key file loaded through it."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.loaded: dict[str, bytes] = {}

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load from ``inner``; keep the data if it is a whole key file."""
        data = self.inner.load(handle, offset, length)
        if handle.type is FileType.KEY and offset == 0 and length is None:
            self.loaded[handle.name] = data
        return data


class _ConfigGiven(DelegatingStorage):
    """``inner`` with the config file served from ``sealed``, which the caller loaded
    already (so that :func:`load_config` does not fetch it again)."""

    def __init__(self, inner: Storage, sealed: bytes) -> None:
        super().__init__(inner)
        self._sealed = sealed

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Return the range of the given config, or load any other file from ``inner``."""
        if handle != CONFIG_HANDLE:
            return self.inner.load(handle, offset, length)
        end = len(self._sealed) if length is None else offset + length
        return self._sealed[offset:end]


class Repository:
    """An open repository. Create with :meth:`init` or :meth:`open`."""

    def __init__(self, storage: Storage, key: Key, key_id: str, config: RepoConfig) -> None:
        self.storage = storage
        self.key = key
        self.key_id = key_id
        self.config = config
        self.index = Index()
        self._index_loaded = False
        self._unsaved: dict[bytes, list[PackedBlob]] = {}
        self._unsaved_count = 0
        self._index_lock = threading.Lock()
        self.compress_data = True
        self.pack_size = DEFAULT_PACK_SIZE
        self._writers: dict[BlobType, PackWriter] = {}
        self._locks: list[RepoLock] = []
        #: restic's --no-lock: shared locks are not written (a read-only repository can be
        #: listed, checked and restored); an exclusive lock is refused.
        self.no_lock = False
        #: The key file that opened the repository, as stored, when :meth:`open` read it
        #: (None otherwise): whoever needs it again need not fetch it again.
        self.key_file_data: bytes | None = None

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        storage: Storage,
        password: str,
        *,
        version: int = 2,
        kdf: keyfiles.KdfParams | None = None,
    ) -> Repository:
        """Create a new repository with one key. Raise ConfigError if one already exists."""
        if version not in (1, 2):
            raise ConfigError(f"repository version must be 1 or 2, not {version}")
        if storage.exists(CONFIG_HANDLE):
            raise ConfigError(f"repository at {storage.location} already exists")
        storage.create_layout()
        master = Key.random()
        key_id = keyfiles.add_key(storage, master, password, params=kdf)
        config = make_config(version)
        save_config(storage, master, config)
        return cls(storage, master, key_id, config)

    @staticmethod
    def load_sealed_config(storage: Storage) -> bytes:
        """Return the ``config`` file as stored (sealed). Raise RepositoryNotFound if there
        is none."""
        try:
            return storage.load(CONFIG_HANDLE)
        except NotFound:
            raise RepositoryNotFound(
                f"no repository at {storage.location} (run 'init' first)"
            ) from None

    @classmethod
    def open(cls, storage: Storage, password: str, key_hint: str | None = None, *,
             sealed_config: bytes | None = None) -> Repository:
        """Open an existing repository. Raise RepositoryNotFound if there is none and
        WrongPassword if no key opens with ``password``. ``sealed_config`` is the config
        file as :meth:`load_sealed_config` returned it, if the caller has it (then it is not
        loaded again)."""
        if sealed_config is None:
            # One load, no existence check first: one round trip per check on object stores.
            sealed_config = cls.load_sealed_config(storage)
        keys_read = _KeysRead(storage)
        master, key_id = keyfiles.find_key(keys_read, password, key_hint)
        repo = cls(storage, master, key_id,
                   load_config(_ConfigGiven(storage, sealed_config), master))
        repo.key_file_data = keys_read.loaded.get(key_id)
        return repo

    @property
    def version(self) -> int:
        """Return the repository format version (1 or 2)."""
        return self.config.version

    @contextmanager
    def lock(self, exclusive: bool = False, retry_seconds: float = 0.0, *,
             preload_index: bool = False) -> Iterator[RepoLock | None]:
        """Hold a repository lock for the duration of the ``with`` block. While it is held,
        writing an index or snapshot raises RepositoryLocked if the lock may have gone stale
        (see :meth:`RepoLock.check_fresh`). With :attr:`no_lock`, a shared lock is not
        written and an exclusive one raises ConfigError. ``preload_index``: the block will
        need the index; on an object store it is loaded while the lock is being taken."""
        if self.no_lock:
            if exclusive:
                raise ConfigError("this command changes the repository and needs its lock: "
                                  "run it without --no-lock")
            yield None
            return
        lk = RepoLock(self.storage, self.key, self.version, exclusive)
        if preload_index and not self._index_loaded:
            # On an object store the index loads during the lock's re-check wait (see
            # RepoLock.acquire), not after it: its round trips cost no time of their own.
            lk.acquire(retry_seconds, meanwhile=self.load_index, on_conflict=self.reset_index)
        else:
            lk.acquire(retry_seconds)
        self._locks.append(lk)
        try:
            yield lk
        except BaseException:
            # The work failed (often because the store is down): releasing the lock fails
            # the same way, and that error must not hide the root cause. A lock left behind
            # goes stale and 'unlock' removes it.
            self._locks.remove(lk)
            with contextlib.suppress(BackupError, OSError):
                lk.release()
            raise
        self._locks.remove(lk)
        lk.release()

    def _check_locks(self) -> None:
        # An index or snapshot makes earlier writes (packs) reachable: it must not be
        # written once another process may have removed them under a stale lock.
        for lk in list(self._locks):
            lk.check_fresh()

    # ---- index ---------------------------------------------------------------------------

    def load_index(self) -> None:
        """Read every index file into memory (once)."""
        if self._index_loaded:
            return
        storage, key = self.storage, self.key
        names = [info.name for info in storage.list(FileType.INDEX)]

        def read(name: str) -> ParsedIndex:
            # On the loader threads: only the compact columns leave them, not the JSON.
            obj = load_json(storage, key, Handle(FileType.INDEX, name))
            return parse_index_file(obj, f"index/{name}")

        # Loaded and decoded concurrently, added in listing order as before.
        with contextlib.closing(_in_order(storage, read, names)) as parsed:
            for columns in parsed:
                self.index.add_parsed(columns)
        self._index_loaded = True

    def list_index_ids(self) -> list[str]:
        """Return the ids of every index file, sorted."""
        return sorted(i.name for i in self.storage.list(FileType.INDEX))

    def load_index_file(self, index_id: str) -> dict[bytes, list[PackedBlob]]:
        """Load one index file; return pack id -> blobs. Raise IntegrityError if it is
        damaged and NotFound if it is missing."""
        obj = load_json(self.storage, self.key, Handle(FileType.INDEX, index_id))
        packs, _ = decode_index(obj, f"index/{index_id}")
        return packs

    def load_index_files(self) -> list[tuple[str, dict[bytes, list[PackedBlob]]]]:
        """Load every index file; return (index id, pack id -> blobs) per file, and fill the
        in-memory index from them. Unlike :attr:`index`, the result keeps every copy of a
        blob that several packs hold. Raise IntegrityError if an index file is damaged."""
        ids = self.list_index_ids()
        with contextlib.closing(_in_order(self.storage, self.load_index_file, ids)) as loaded:
            files = list(zip(ids, loaded, strict=True))
        for _, packs in files:
            for pack_id, blobs in packs.items():
                self.index.add_pack(pack_id, blobs)
        self._index_loaded = True
        return files

    def set_index_packs(self, packs: dict[bytes, list[PackedBlob]]) -> None:
        """Replace the in-memory index with exactly ``packs`` (for check and repair, which
        read index files one by one and skip damaged ones)."""
        self.index = Index()
        for pack_id, blobs in packs.items():
            self.index.add_pack(pack_id, blobs)
        self._index_loaded = True

    def reset_index(self) -> None:
        """Forget the in-memory index (after index files were rewritten); the next
        :meth:`load_index` reads the files again."""
        self.index = Index()
        self._index_loaded = False

    def _on_pack_saved(self, pack_id: bytes, blobs: list[PackedBlob]) -> None:
        self.index.add_pack(pack_id, blobs)
        with self._index_lock:
            self._unsaved[pack_id] = blobs
            self._unsaved_count += len(blobs)
            full = self._unsaved_count >= INDEX_MAX_BLOBS
        if full:
            self._write_index()

    def _write_index(self) -> None:
        if self._unsaved:
            self._check_locks()
        with self._index_lock:
            packs, self._unsaved, self._unsaved_count = self._unsaved, {}, 0
        if packs:
            save_json(self.storage, self.key, FileType.INDEX, encode_index(packs), self.version)

    # ---- blobs ---------------------------------------------------------------------------

    def _writer(self, blob_type: BlobType) -> PackWriter:
        w = self._writers.get(blob_type)
        if w is None:
            # Content workers save their first blobs at the same moment: two writers for one
            # type would strand the blobs of the one that loses the race.
            with self._index_lock:
                w = self._writers.get(blob_type)
                if w is None:
                    # Tree packs are cached as they are written (a metadata cache only).
                    storage = (tree_pack_storage(self.storage) if blob_type is BlobType.TREE
                               else self.storage)
                    w = PackWriter(storage, self.key, blob_type, self._on_pack_saved,
                                   version=self.version, compress_data=self.compress_data,
                                   target_size=self.pack_size)
                    self._writers[blob_type] = w
        return w

    def has_blob(self, blob_type: BlobType, blob_id: bytes) -> bool:
        """Return whether the blob is stored or queued for storing."""
        return self.index.has(blob_type, blob_id) or self._writer(blob_type).is_pending(blob_id)

    def save_blob(self, blob_type: BlobType, data: bytes | memoryview,
                  blob_id: bytes | None = None) -> tuple[bytes, int]:
        """Store a blob unless an identical one exists; return (id, bytes added to packs)."""
        if blob_id is None:
            blob_id = hashlib.sha256(data).digest()
        if self.has_blob(blob_type, blob_id):
            return blob_id, 0
        return blob_id, self._writer(blob_type).add(blob_id, data)

    def save_sealed_blob(self, blob_type: BlobType, blob_id: bytes, sealed: bytes | memoryview,
                         uncompressed_length: int) -> int:
        """Store a blob sealed elsewhere with this repository's key (see
        :func:`~airflow_backup.repository.packer.blob_payload`) unless an identical one
        exists; return the bytes added to packs."""
        if self.has_blob(blob_type, blob_id):
            return 0
        return self._writer(blob_type).add_sealed(blob_id, sealed, uncompressed_length)

    def load_blob(self, blob_type: BlobType, blob_id: bytes) -> bytes:
        """Return a blob's plaintext after checking its MAC and SHA-256.

        Raise IntegrityError naming the pack if it is damaged, or if it is not indexed.
        """
        entry = self.index.lookup(blob_type, blob_id)
        if entry is None:
            raise IntegrityError(f"{blob_type.value} blob {blob_id.hex()} is not in the index")
        pack = entry.pack_id.hex()
        try:
            sealed = self.storage.load(Handle(FileType.DATA, pack), entry.blob.offset,
                                       entry.blob.length)
        except NotFound:
            raise IntegrityError(f"pack {pack} is missing (needed for blob {blob_id.hex()})") \
                from None
        return self.decode_blob(pack, entry.blob, sealed)

    def decode_blob(self, pack: str, blob: PackedBlob, sealed: bytes | memoryview) -> bytes:
        """Open one sealed blob read from ``pack``; verify it. Raise IntegrityError if bad."""
        what = self._blob_what(pack, blob, sealed)
        return self._verify_blob(what, blob, self.key.open(sealed, what=what))

    def decode_blob_into(self, pack: str, blob: PackedBlob,
                         sealed: bytes | memoryview) -> bytes | memoryview:
        """Like :meth:`decode_blob`, but decrypt (and decompress a large blob) into this
        thread's scratch buffers: the plaintext may come back as a view of one, valid until
        the thread's next call. Restore and check read every blob; this spares fresh buffers
        per blob."""
        what = self._blob_what(pack, blob, sealed)
        plain: bytes | memoryview = self.key.open_into(sealed, scratch(blob.length, PLAIN),
                                                       what=what)
        if blob.compressed:
            plain = decompress_sized(plain, blob.uncompressed_length, what)
        self._check_id(what, blob, plain)
        return plain

    @staticmethod
    def _blob_what(pack: str, blob: PackedBlob, sealed: bytes | memoryview) -> str:
        what = f"pack {pack}, blob {blob.id.hex()[:16]}"
        if len(sealed) != blob.length:
            raise IntegrityError(f"{what}: truncated (read {len(sealed)} of {blob.length} bytes)")
        return what

    def _verify_blob(self, what: str, blob: PackedBlob, plain: bytes) -> bytes:
        """Decompress if the blob is compressed, and check its SHA-256 against its id."""
        if blob.compressed:
            plain = decompress(plain, what)
            if len(plain) != blob.uncompressed_length:
                raise IntegrityError(f"{what}: wrong uncompressed length")
        self._check_id(what, blob, plain)
        return plain

    @staticmethod
    def _check_id(what: str, blob: PackedBlob, plain: bytes | memoryview) -> None:
        if hashlib.sha256(plain).digest() != blob.id:
            raise IntegrityError(f"{what}: content does not match its id")

    def flush(self) -> None:
        """Write unfinished packs, then an index for every pack not yet indexed on disk."""
        writers = list(self._writers.values())
        # On an object store the last data pack and the tree pack upload together: one
        # round trip and a pack's transfer less before the index and snapshot.
        for w in writers:
            w.start_flush()
        for w in writers:
            w.flush()
        self._write_index()

    # ---- trees ---------------------------------------------------------------------------

    def save_tree(self, nodes: Sequence[Node | Mapping[str, JSONValue]]) -> tuple[bytes, int]:
        """Store a tree blob (nodes as for :func:`encode_tree`); return (tree id, bytes
        added)."""
        return self.save_blob(BlobType.TREE, encode_tree(nodes))

    def load_tree(self, tree_id: bytes) -> list[Node]:
        """Load and parse a tree blob."""
        return decode_tree(self.load_blob(BlobType.TREE, tree_id), f"tree {tree_id.hex()}")

    # ---- snapshots -----------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> str:
        """Flush pending data, then store ``snapshot``; set and return its id."""
        self.flush()
        self._check_locks()
        snapshot.id = save_json(self.storage, self.key, FileType.SNAPSHOT, snapshot.to_json(),
                                self.version)
        return snapshot.id

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        """Load one snapshot by full id. Raise IntegrityError naming the file if it is
        damaged or malformed (and the field, see :meth:`Snapshot.from_json`), NotFound if
        it does not exist."""
        handle = Handle(FileType.SNAPSHOT, snapshot_id)
        return Snapshot.from_json(load_json(self.storage, self.key, handle), snapshot_id,
                                  str(handle))

    #: The snapshot files the last :meth:`list_snapshots` skipped: file name -> why.
    damaged_snapshots: Mapping[str, str] = MappingProxyType({})
    _warned_damaged: frozenset[str] = frozenset()

    def list_snapshots(self, *, warn: bool = True) -> list[Snapshot]:
        """Return every readable snapshot, oldest first.

        A snapshot file that is damaged or malformed is skipped, as restic skips it: one bad
        file must not make every other snapshot unreachable. Each is recorded in
        :attr:`damaged_snapshots`, so that it can still be named (and removed) by its id,
        and logged once as a warning unless ``warn`` is False (the caller looks for one
        snapshot by id and reports a damaged one itself). A file that vanished meanwhile
        (removed by another process) is skipped silently; storage errors are raised.
        """
        snaps: list[Snapshot] = []
        damaged: dict[str, str] = {}

        def load(name: str) -> Snapshot | IntegrityError | None:
            try:
                return self.load_snapshot(name)
            except NotFound:
                return None
            except IntegrityError as exc:
                return exc

        names = [info.name for info in self.storage.list(FileType.SNAPSHOT)]
        with contextlib.closing(_in_order(self.storage, load, names)) as loaded:
            for name, got in zip(names, loaded, strict=True):
                if isinstance(got, Snapshot):
                    snaps.append(got)
                elif got is not None:
                    damaged[name] = str(got)
        if warn:
            for name in sorted(set(damaged) - self._warned_damaged):
                _log.warning("skipping damaged snapshot file: %s", damaged[name])
            self._warned_damaged = self._warned_damaged | damaged.keys()
        self.damaged_snapshots = MappingProxyType(damaged)
        snaps.sort(key=lambda s: (s.time_ns, s.id))
        return snaps

    def remove_snapshot(self, snapshot_id: str) -> None:
        """Delete one snapshot file. Raise NotFound if it does not exist."""
        self.storage.remove(Handle(FileType.SNAPSHOT, snapshot_id))

    def resolve_id(self, file_type: FileType, prefix: str) -> str:
        """Return the one file id of ``file_type`` starting with ``prefix``.

        Raise ConfigError if no file or several files match.
        """
        matches = [i.name for i in self.storage.list(file_type) if i.name.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        what = file_type.value.rstrip("s")
        if not matches:
            raise ConfigError(f"no {what} matches id {prefix!r}")
        raise ConfigError(f"id prefix {prefix!r} is ambiguous ({len(matches)} {what}s match)")

    def load_raw_json(self, handle: Handle) -> Any:
        """Load any unpacked file (index, snapshot, lock) and return its parsed JSON."""
        return load_json(self.storage, self.key, handle)
