"""The blob-store protocol every storage backend implements.

A backend stores opaque files addressed by a :class:`Handle` (a file type plus a name) in
restic's layout. It knows nothing about encryption or packs. Backends raise only the storage
errors of :mod:`airflow_backup.errors`: ``NotFound`` for a missing file,
``TransientStorageError`` for something worth retrying, ``PermanentStorageError`` otherwise.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "FileInfo",
    "FileType",
    "Handle",
    "Storage",
    "is_strongly_consistent",
    "load_into",
    "object_path",
]


class FileType(enum.Enum):
    """The kinds of file in a restic repository; the value is the directory name."""

    CONFIG = "config"
    DATA = "data"
    INDEX = "index"
    KEY = "keys"
    LOCK = "locks"
    SNAPSHOT = "snapshots"


@dataclass(frozen=True, slots=True)
class Handle:
    """A file in the repository: its type and name (a hex id; ``config`` for the config)."""

    type: FileType
    name: str = ""

    def __str__(self) -> str:
        return object_path(self)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A listed file: its name (without directories) and its size in bytes."""

    name: str
    size: int


def object_path(handle: Handle) -> str:
    """Given a handle, return its path relative to the repository root in restic's layout.

    Pack files live in ``data/<first two hex digits>/<id>``; ``config`` is a single file.
    """
    if handle.type is FileType.CONFIG:
        return "config"
    if handle.type is FileType.DATA:
        return f"data/{handle.name[:2]}/{handle.name}"
    return f"{handle.type.value}/{handle.name}"


@runtime_checkable
class Storage(Protocol):
    """A blob store in restic's layout.

    ``save`` must be atomic: after it returns, the whole file is durable and visible; a crash
    before that leaves no partial file under the final name. ``save`` of an existing name is an
    error for every type except locks (ids are content hashes, so a rewrite is a bug).
    """

    @property
    def location(self) -> str:
        """Return a human-readable location with any credentials removed."""
        ...

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``handle`` atomically and durably. ``data`` is not kept after
        this returns (what is kept is copied): callers may reuse the buffer."""
        ...

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes from ``offset`` (to the end if ``length`` is None).

        Raise NotFound if the file does not exist.
        """
        ...

    def stat(self, handle: Handle) -> FileInfo:
        """Return the file's size. Raise NotFound if it does not exist."""
        ...

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """Yield every file of ``file_type`` (in no particular order)."""
        ...

    def remove(self, handle: Handle) -> None:
        """Delete the file. Raise NotFound if it does not exist."""
        ...

    def exists(self, handle: Handle) -> bool:
        """Return whether the file exists."""
        ...

    def create_layout(self) -> None:
        """Create the directories a new repository needs (a no-op for object stores)."""
        ...


def load_into(storage: Storage, handle: Handle, offset: int, buf: memoryview) -> int:
    """Read up to ``len(buf)`` bytes of ``handle`` from ``offset`` into ``buf``; return how
    many were read (fewer only at the end of the file). Raise NotFound if it does not exist.

    A store that can read straight into a buffer has a ``load_into`` method of this
    signature (the local file system; wrappers pass it through). Others are served by
    ``load`` and one copy. Restore and check read every pack this way into a buffer they
    reuse: a fresh buffer per read faults in every page anew (262,000 faults for 1 GiB).
    """
    method = getattr(storage, "load_into", None)
    if method is not None:
        n: int = method(handle, offset, buf)
        return n
    return load_by_copy(storage, handle, offset, buf)


def load_by_copy(storage: Storage, handle: Handle, offset: int, buf: memoryview) -> int:
    """Serve :func:`load_into` through ``storage.load`` and one copy into ``buf``."""
    data = storage.load(handle, offset, len(buf))
    buf[: len(data)] = data
    return len(data)


def io_workers(storage: object) -> int:
    """Return how many threads should move data to or from ``storage``: one per core (2 to
    8) on a local file system or in memory, where more threads only contend for the GIL and
    the kernel (measured on 2 cores: 1 GiB cold backup 10.2 → 9.3 s and restore 5.8 → 5.5 s
    going from 4 or 8 workers to 2), and 8 on object stores, whose ranged reads and uploads
    are latency-bound."""
    if is_strongly_consistent(storage):
        return max(2, min(8, os.cpu_count() or 2))
    return 8


def small_files_apart(storage: object, workers: int) -> bool:
    """Return whether small files should be worked on by one thread of their own, beside
    ``workers`` threads for large data: on local storage (strongly consistent) with more
    than one worker. Small files are bound by the GIL (per-file Python, and the AES and
    Poly1305 set-up that ``cryptography`` does while holding it): one thread handles them as
    fast as two with a quarter to a third less CPU, in backup and restore alike (measured in
    docs/performance.md). On object stores their transfers wait on the network, so they
    stay on the pool."""
    return workers > 1 and is_strongly_consistent(storage)


def is_strongly_consistent(storage: object) -> bool:
    """Return whether a file saved to ``storage`` is at once visible to every reader and
    lister (a local file system, memory), looking through wrappers that keep ``inner``.

    Object stores and network file systems may show new files late; the lock protocol then
    waits before it re-checks for competing locks.
    """
    seen = 0
    while storage is not None and seen < 16:
        if getattr(storage, "strongly_consistent", False):
            return True
        storage = getattr(storage, "inner", None)
        seen += 1
    return False
