"""A local cache of a repository's metadata: index files, snapshots and tree packs.

Files in a restic repository are named by the SHA-256 of their bytes and never change, so a
cached copy is good exactly when its hash equals its name. The cache is never trusted
blindly: a cached file is hashed before its first use in a process, and a copy that does not
match is deleted and fetched again. Existence and listings always come from the store; a
listing of index or snapshot files also drops cached files that no longer exist there.

The cache lives in ``<cache root>/<repository id>/`` (restic's layout below it), where the
root is ``AIRFLOW_BACKUP_CACHE_DIR``, else ``$XDG_CACHE_HOME/airflow-backup``, else
``~/.cache/airflow-backup``. The cache is best effort: a failure to write it is logged at
DEBUG and ignored. Which data packs hold trees is known only to the repository; it passes
``is_tree_pack``, and saves the tree packs it writes through :func:`tree_pack_storage`, so
that they are cached as they are written (as restic does): the next backup reads its
parent's trees locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from airflow_backup.cachedir import resolve_cache_root
from airflow_backup.errors import ConfigError
from airflow_backup.storage.atomic import replace_file
from airflow_backup.storage.base import (
    FileInfo,
    FileType,
    Handle,
    Storage,
    load_as_one_chunk,
    load_by_copy,
    load_chunks,
    load_into,
    object_path,
)
from airflow_backup.storage.wrapper import DelegatingStorage

__all__ = ["CachingStorage", "resolve_cache_root", "tree_pack_storage"]

log = logging.getLogger("airflow_backup.storage.cache")

_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by airflow-backup.\n")


class CachingStorage(DelegatingStorage):
    """Wraps ``inner``; serves index, snapshot and tree-pack loads from ``directory`` (and
    loads of files it was given to :meth:`hold` from memory). Existence, stat and layout are
    the store's, and so are location and capabilities.

    ``hits`` and ``misses`` count cached loads served locally and fetched from the store.
    """

    def __init__(self, inner: Storage, directory: str | os.PathLike[str], *,
                 is_tree_pack: Callable[[str], bool] | None = None) -> None:
        super().__init__(inner)
        self.directory = Path(directory)
        self._is_tree_pack = is_tree_pack or (lambda _name: False)
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._ready = False
        self._held: dict[Handle, bytes] = {}

    def _cached(self, handle: Handle) -> bool:
        if handle.type in (FileType.INDEX, FileType.SNAPSHOT):
            return True
        return handle.type is FileType.DATA and self._is_tree_pack(handle.name)

    def _path(self, handle: Handle) -> Path:
        return self.directory / object_path(handle)

    def _prepare(self) -> None:
        if self._ready:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tag = self.directory.parent / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(_TAG, encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"cannot create cache directory {self.directory}: "
                              f"{exc.strerror}") from None
        self._ready = True

    def _read_verified(self, handle: Handle, offset: int, length: int | None) -> bytes | None:
        path = self._path(handle)
        try:
            if handle.name in self._verified:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read() if length is None else f.read(length)
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != handle.name:
            log.warning("cache: %s does not match its id; discarding the cached copy",
                        object_path(handle))
            path.unlink(missing_ok=True)
            return None
        with self._lock:
            self._verified.add(handle.name)
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def _store(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        if hashlib.sha256(data).hexdigest() != handle.name:
            return  # never cache what does not match its name; the repository will complain
        path = self._path(handle)
        try:
            self._prepare()
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(path, bytes(data))
            with self._lock:
                self._verified.add(handle.name)
        except (OSError, ConfigError) as exc:
            log.debug("cache: cannot store %s: %s", object_path(handle), exc)

    # ---- the Storage protocol ------------------------------------------------------------

    def hold(self, handle: Handle, data: bytes) -> None:
        """Serve loads of ``handle`` from ``data``, in memory only, until it is removed
        through this wrapper: a file the caller has just read from the store (the key file
        that opened the repository). Ignored unless ``data`` matches its name (its SHA-256),
        as every file but the config does: such a file never changes."""
        if hashlib.sha256(data).hexdigest() == handle.name:
            with self._lock:
                self._held[handle] = data

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Serve from the cache when it holds a verified copy (or from memory, see
        :meth:`hold`), else fetch the whole file, cache it and return the range."""
        held = self._held.get(handle)
        if held is not None:
            return held[offset:] if length is None else held[offset:offset + length]
        if not self._cached(handle):
            return self.inner.load(handle, offset, length)
        data = self._read_verified(handle, offset, length)
        if data is not None:
            self.hits += 1
            return data
        self.misses += 1
        whole = self.inner.load(handle)
        self._store(handle, whole)
        end = len(whole) if length is None else offset + length
        return whole[offset:end]

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        """Stream a range from the store for what is never cached (data packs other than
        tree packs); serve anything else (cached or held) as one chunk through
        :meth:`load`."""
        if handle not in self._held and not self._cached(handle):
            return load_chunks(self.inner, handle, offset, length)
        return load_as_one_chunk(self, handle, offset, length)

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read a range into ``buf``: from the store for what is never cached (data packs),
        else through :meth:`load`."""
        if not self._cached(handle):
            return load_into(self.inner, handle, offset, buf)
        return load_by_copy(self, handle, offset, buf)

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save to the store; index and snapshot files are also written to the cache."""
        self.inner.save(handle, data)
        if handle.type in (FileType.INDEX, FileType.SNAPSHOT):
            self._store(handle, data)

    def save_tree_pack(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save a data pack that holds trees to the store, then to the cache (the index
        names it a tree pack only once it is saved, too late for :meth:`save`)."""
        self.inner.save(handle, data)
        if handle.type is FileType.DATA:
            self._store(handle, data)

    def remove(self, handle: Handle) -> None:
        """Remove from the store and from the cache."""
        with self._lock:
            self._held.pop(handle, None)
        self.inner.remove(handle)
        with contextlib.suppress(OSError):
            self._path(handle).unlink(missing_ok=True)

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """List from the store; drop cached index/snapshot files that are gone there."""
        items = list(self.inner.list(file_type))
        if file_type in (FileType.INDEX, FileType.SNAPSHOT):
            names = {i.name for i in items}
            folder = self.directory / file_type.value
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    if not entry.name.startswith(".") and entry.name not in names:
                        Path(entry.path).unlink(missing_ok=True)
        return iter(items)


class _TreePackSaver(DelegatingStorage):
    """The metadata cache as a writer of tree packs sees it: saves are also cached."""

    def __init__(self, cache: CachingStorage) -> None:
        super().__init__(cache)
        self._cache = cache

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save to the store and keep a copy in the cache."""
        self._cache.save_tree_pack(handle, data)


def tree_pack_storage(storage: Storage) -> Storage:
    """Return what a writer of tree packs (and only of tree packs) should save them to:
    ``storage`` itself, unless it is the metadata cache; then a view of it that also caches
    every pack saved. Everything else goes to ``storage`` unchanged."""
    if isinstance(storage, CachingStorage):
        return _TreePackSaver(storage)
    return storage
