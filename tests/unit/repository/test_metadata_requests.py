"""How many storage calls opening, locking and backing up cost (issue 26): each is a round
trip on an object store. A storage wrapper counts calls per operation and file; nothing here
measures time."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.cli.keyhint import read_key_hint, remember_key
from airflow_backup.errors import (
    IntegrityError,
    PermanentStorageError,
    RepositoryNotFound,
    WrongPassword,
)
from airflow_backup.operations.spec import (
    CacheSpec,
    PasswordKind,
    PasswordSource,
    RepositorySpec,
    init_repository,
    open_repository,
)
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.locks import RepoLock, list_locks
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.base import (
    Capabilities,
    FileInfo,
    FileType,
    Handle,
    Storage,
    object_path,
)
from airflow_backup.storage.cache import CachingStorage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.retry import RetryingStorage
from airflow_backup.storage.wrapper import DelegatingStorage

PW = "pw"
KDF = KdfParams(1024, 8, 1)


class Counting(DelegatingStorage):
    """Counts calls as (operation, file path); ``remote`` makes it declare an object
    store's capabilities (8 I/O threads, not strongly consistent); ``delay`` slows loads so
    that concurrent ones overlap, and ``max_loading`` records how many did."""

    def __init__(self, inner: Storage, *, remote: bool = False, delay: float = 0.0) -> None:
        super().__init__(inner)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._remote = remote
        self._delay = delay
        self._lock = threading.Lock()
        self._loading = 0
        self.max_loading = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities.remote() if self._remote else self.inner.capabilities

    def count(self, op: str, file_type: FileType | None = None) -> int:
        """Return how many calls of ``op`` (on files of ``file_type``) were made."""
        prefix = "" if file_type is None else (
            "config" if file_type is FileType.CONFIG else file_type.value + "/")
        return sum(n for (o, p), n in self.calls.items() if o == op and p.startswith(prefix))

    def reset(self) -> None:
        self.calls.clear()

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        self.calls["load", object_path(handle)] += 1
        with self._lock:
            self._loading += 1
            self.max_loading = max(self.max_loading, self._loading)
        try:
            if self._delay:
                time.sleep(self._delay)
            return self.inner.load(handle, offset, length)
        finally:
            with self._lock:
                self._loading -= 1

    def stat(self, handle: Handle) -> FileInfo:
        self.calls["stat", object_path(handle)] += 1
        return self.inner.stat(handle)

    def exists(self, handle: Handle) -> bool:
        self.calls["exists", object_path(handle)] += 1
        return self.inner.exists(handle)

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        self.calls["list", file_type.value + "/"] += 1
        return self.inner.list(file_type)

    def remove(self, handle: Handle) -> None:
        self.calls["remove", object_path(handle)] += 1
        self.inner.remove(handle)


def _new_repo(store: Storage) -> Repository:
    return Repository.init(store, PW, kdf=KDF)


def _backup(repo: Repository, src: Path, dir_cache: Path | None = None) -> str:
    with repo.lock():
        result = Archiver(repo).backup(BackupOptions(paths=[str(src)],
                                                  dir_cache=str(dir_cache) if dir_cache else None))
    return result.snapshot.id


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n" * 100)
    (root / "sub" / "b.bin").write_bytes(os.urandom(20_000))
    return root


# ---- opening ---------------------------------------------------------------------------


def test_open_loads_config_and_key_once_and_checks_nothing_first() -> None:
    store = Counting(MemoryStorage())
    _new_repo(store)
    store.reset()
    repo = Repository.open(store, PW)
    assert store.count("load", FileType.CONFIG) == 1
    assert store.count("load", FileType.KEY) == 1
    assert store.count("stat") == store.count("exists") == 0
    assert repo.key_file_data == store.inner.load(Handle(FileType.KEY, repo.key_id))


def test_open_of_nothing_is_repository_not_found_with_the_same_message() -> None:
    store = Counting(MemoryStorage())
    with pytest.raises(RepositoryNotFound, match=r"^no repository at .* \(run 'init' first\)$"):
        Repository.open(store, PW)
    assert store.count("load", FileType.KEY) == 0


def test_a_damaged_config_is_still_an_integrity_error() -> None:
    store = MemoryStorage()
    _new_repo(store)
    sealed = bytearray(store.load(Handle(FileType.CONFIG, "config")))
    sealed[-1] ^= 1
    store.remove(Handle(FileType.CONFIG, "config"))
    store.save(Handle(FileType.CONFIG, "config"), bytes(sealed))
    with pytest.raises(IntegrityError):
        Repository.open(store, PW)


def _spec(store: Storage, cache_root: Path, *, ask: list[str] | None = None) -> RepositorySpec:
    def reader() -> str:
        if ask is not None:
            ask.append("asked")
        return PW

    return RepositorySpec("s3://bucket/repo", PasswordSource(PasswordKind.READER, reader=reader),
                          cache=CacheSpec(root=str(cache_root)), storage=lambda: store)


def test_open_repository_reads_the_config_once_and_the_key_once_with_the_hint(
        tmp_path: Path) -> None:
    store = Counting(MemoryStorage())
    _new_repo(store)
    store.reset()
    repo = open_repository(_spec(store, tmp_path / "cache"))
    assert isinstance(repo.storage, CachingStorage)
    # The CLI then remembers the key's salt for the next run: served from memory.
    remember_key("s3://bucket/repo", repo.storage, repo.key_id, str(tmp_path / "cache"))
    hint = read_key_hint("s3://bucket/repo", str(tmp_path / "cache"))
    assert hint is not None and hint[0] == repo.key_id
    assert store.count("load", FileType.CONFIG) == 1
    assert store.count("load", FileType.KEY) == 1
    assert store.count("stat") == store.count("exists") == 0


def test_a_missing_repository_is_reported_before_the_password_is_read(tmp_path: Path) -> None:
    asked: list[str] = []
    with pytest.raises(RepositoryNotFound):
        open_repository(_spec(MemoryStorage(), tmp_path / "cache", ask=asked))
    assert asked == []


def test_init_repository_opens_an_existing_one_with_one_config_load(tmp_path: Path) -> None:
    store = Counting(MemoryStorage())
    created, repo_id = init_repository(_spec(store, tmp_path / "c"))
    assert created
    store.reset()
    assert init_repository(_spec(store, tmp_path / "c")) == (False, repo_id)
    assert store.count("load", FileType.CONFIG) == 1
    assert store.count("exists") == store.count("stat") == 0


def test_a_held_key_file_is_served_only_while_it_exists(tmp_path: Path) -> None:
    inner = MemoryStorage()
    repo = _new_repo(inner)
    raw = inner.load(Handle(FileType.KEY, repo.key_id))
    cache = CachingStorage(inner, tmp_path / "c")
    handle = Handle(FileType.KEY, repo.key_id)
    cache.hold(handle, b"not the key file")  # does not match its name: ignored
    cache.hold(handle, raw)
    inner.remove(handle)
    assert cache.load(handle) == raw and cache.load(handle, 2, 3) == raw[2:5]
    inner.save(handle, raw)
    cache.remove(handle)
    with pytest.raises(Exception, match="not found"):
        cache.load(handle)


# ---- index and snapshots ---------------------------------------------------------------


def _repo_with_snapshots(src: Path, n: int) -> tuple[MemoryStorage, list[str]]:
    store = MemoryStorage()
    repo = _new_repo(store)
    ids = []
    for i in range(n):
        (src / f"f{i}").write_bytes(os.urandom(100))
        ids.append(_backup(repo, src))
    return store, ids


def test_index_and_snapshots_load_each_file_once_concurrently(src: Path) -> None:
    inner, ids = _repo_with_snapshots(src, 6)
    store = Counting(inner, remote=True, delay=0.05)
    repo = Repository.open(store, PW)
    store.reset()
    store.max_loading = 0
    snaps = repo.list_snapshots()
    assert [s.id for s in snaps] == ids  # oldest first, as before
    assert store.count("load", FileType.SNAPSHOT) == 6
    assert store.max_loading > 1

    store.reset()
    store.max_loading = 0
    repo.load_index()
    index_files = sorted(i.name for i in inner.list(FileType.INDEX))
    assert store.count("load", FileType.INDEX) == len(index_files) == 6
    assert store.max_loading > 1
    serial = Repository.open(inner, PW)
    serial.load_index()
    assert repo.index.packs(BlobType.DATA) == serial.index.packs(BlobType.DATA)
    assert len(repo.index) == len(serial.index)

    files = Repository.open(store, PW).load_index_files()
    assert [f for f, _ in files] == index_files


def test_a_local_store_loads_metadata_files_one_after_another(src: Path) -> None:
    """On a local file system a metadata file costs no wait, and threads only contend for
    the GIL decrypting and parsing them: they are loaded on the caller's thread."""
    inner, ids = _repo_with_snapshots(src, 6)
    store = Counting(inner, delay=0.01)
    repo = Repository.open(store, PW)
    store.reset()
    store.max_loading = 0
    assert [s.id for s in repo.list_snapshots()] == ids
    repo.load_index()
    assert store.count("load", FileType.SNAPSHOT) == 6
    assert store.max_loading == 1


def test_snapshot_listing_skips_vanished_and_records_damaged_files(src: Path) -> None:
    inner, ids = _repo_with_snapshots(src, 4)

    class Tricky(Counting):
        def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
            if handle == Handle(FileType.SNAPSHOT, ids[1]):
                self.inner.remove(handle)  # removed by another process meanwhile
            data = super().load(handle, offset, length)
            if handle == Handle(FileType.SNAPSHOT, ids[2]):
                return data[:-1] + bytes([data[-1] ^ 1])
            return data

    repo = Repository.open(Tricky(inner, remote=True), PW)
    snaps = repo.list_snapshots(warn=False)
    assert [s.id for s in snaps] == [ids[0], ids[3]]
    assert list(repo.damaged_snapshots) == [ids[2]]


def test_a_storage_error_in_a_concurrent_load_is_raised(src: Path) -> None:
    inner, ids = _repo_with_snapshots(src, 5)

    class Failing(Counting):
        def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
            if handle.type is FileType.INDEX or handle == Handle(FileType.SNAPSHOT, ids[3]):
                raise PermanentStorageError(f"load {object_path(handle)}: access denied")
            return super().load(handle, offset, length)

    repo = Repository.open(Failing(inner, remote=True), PW)
    with pytest.raises(PermanentStorageError, match=f"snapshots/{ids[3]}: access denied"):
        repo.list_snapshots()
    with pytest.raises(PermanentStorageError, match="access denied"):
        repo.load_index()


# ---- locks ---------------------------------------------------------------------------------


def test_taking_and_releasing_a_lock_never_loads_our_own_lock(src: Path) -> None:
    inner = MemoryStorage()
    repo = _new_repo(inner)
    store = Counting(inner, remote=True)
    retrying = RetryingStorage(store)
    lk = RepoLock(retrying, repo.key, repo.version, exclusive=False)
    lk.acquire()
    assert store.count("load", FileType.LOCK) == 0
    assert store.count("list", FileType.LOCK) == 2  # the check, and the re-check
    lk.release()
    assert store.count("load", FileType.LOCK) == 0
    assert store.count("stat") == 0 and store.count("remove", FileType.LOCK) == 1
    assert list(inner.list(FileType.LOCK)) == []


def test_other_locks_are_still_loaded_and_honoured(src: Path) -> None:
    inner = MemoryStorage()
    repo = _new_repo(inner)
    other = RepoLock(inner, repo.key, repo.version, exclusive=True)
    other.acquire()
    store = Counting(inner, remote=True)
    mine = RepoLock(store, repo.key, repo.version, exclusive=False)
    with pytest.raises(Exception, match="already locked"):
        mine.acquire()
    assert store.count("load", FileType.LOCK) == 1
    assert [lk.id for lk in list_locks(inner, repo.key)] == [other._id]
    assert list_locks(inner, repo.key, skip=other._id) == []
    other.release()


# ---- tree packs and the parent snapshot ----------------------------------------------------


def test_tree_packs_are_cached_as_written_and_a_rebackup_fetches_no_pack(
        src: Path, tmp_path: Path) -> None:
    store = Counting(MemoryStorage())
    _new_repo(store)
    spec = _spec(store, tmp_path / "cache")
    first = open_repository(spec)
    _backup(first, src, dir_cache=tmp_path / "dirs")
    tree_packs = {p.hex() for p in first.index.packs(BlobType.TREE)}
    assert tree_packs
    cache_dir = tmp_path / "cache" / first.config.id / "data"
    cached = {p.name for p in cache_dir.rglob("*") if p.is_file()}
    assert cached == tree_packs  # the tree packs, and no data pack

    store.reset()
    again = open_repository(spec)
    parent_id = again.list_snapshots()[-1].id
    _backup(again, src, dir_cache=tmp_path / "dirs")
    assert store.count("load", FileType.DATA) == 0
    assert store.count("load", FileType.SNAPSHOT) == 0
    assert store.count("load", FileType.INDEX) == 0
    # The directory cache names the parent: the listing showed it, no check of its own.
    assert store.calls["exists", f"snapshots/{parent_id}"] == 0
    assert store.calls["stat", f"snapshots/{parent_id}"] == 0


def test_a_directory_cache_of_a_removed_snapshot_is_still_checked(
        src: Path, tmp_path: Path) -> None:
    store = Counting(MemoryStorage())
    repo = _new_repo(store)
    first = _backup(repo, src, dir_cache=tmp_path / "dirs")
    repo.remove_snapshot(first)
    store.reset()
    with repo.lock():
        Archiver(repo).backup(BackupOptions(paths=[str(src)], dir_cache=str(tmp_path / "dirs")))
    assert store.calls["exists", f"snapshots/{first}"] == 1


def test_snapshot_round_trip_is_unchanged(src: Path) -> None:
    inner, ids = _repo_with_snapshots(src, 2)
    repo = Repository.open(inner, PW)
    assert isinstance(repo.load_snapshot(ids[0]), Snapshot)


def test_a_whole_key_id_hint_is_read_without_listing_the_keys(src: Path) -> None:
    """The CLI remembers the id of the key file that opened a repository: read directly,
    it spares the listing; a hint that is gone or does not open falls back to the list."""
    from airflow_backup.repository.keys import add_key

    inner, _ = _repo_with_snapshots(src, 1)
    first = Repository.open(inner, PW)
    other_id = add_key(inner, first.key, "other password",
                       params=KdfParams(1024, 8, 1))
    store = Counting(inner, remote=True)
    repo = Repository.open(store, PW, first.key_id)
    assert repo.key_id == first.key_id
    assert store.count("list", FileType.KEY) == 0 and store.count("load", FileType.KEY) == 1
    store.reset()
    # The hinted key exists but the password is another key's: listed, and found.
    assert Repository.open(store, "other password", first.key_id).key_id == other_id
    assert store.count("list", FileType.KEY) == 1
    store.reset()
    assert Repository.open(store, PW, "f" * 64).key_id == first.key_id  # a stale hint
    assert store.count("list", FileType.KEY) == 1
    with pytest.raises(WrongPassword):
        Repository.open(store, "nothing opens", first.key_id)
