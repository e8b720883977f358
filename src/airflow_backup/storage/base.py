"""The blob-store protocol every storage backend implements.

A backend stores opaque files addressed by a :class:`Handle` (a file type plus a name) in
restic's layout. It knows nothing about encryption or packs. Backends raise only the storage
errors of :mod:`airflow_backup.errors`: ``NotFound`` for a missing file,
``TransientStorageError`` for something worth retrying, ``PermanentStorageError`` otherwise.

What a store can do beyond the protocol's methods (is it strongly consistent, how many
threads suit it, does it read straight into a buffer) it declares in its
:class:`Capabilities`; callers decide from those, never by probing attributes. Wrappers
(:class:`~airflow_backup.storage.wrapper.DelegatingStorage`) report their inner store's.

One optional protocol beside it: a store (or wrapper) that can hand over a ranged read
while it is still arriving implements :class:`ChunkedReads`; callers read through
:func:`load_chunks`, which serves every other store with one ``load``. It is a protocol of
its own, not a capability, because a wrapper that does not implement it (fault injection,
rate limiting, the dry run) must hide the streamed read of the store inside it: its own
``load`` is where it does its work.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Capabilities",
    "ChunkedReads",
    "FileInfo",
    "FileType",
    "Handle",
    "Storage",
    "close_chunks",
    "io_workers",
    "is_strongly_consistent",
    "load_as_one_chunk",
    "load_by_copy",
    "load_chunks",
    "load_into",
    "object_path",
    "small_files_apart",
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


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store declares about itself.

    - ``strongly_consistent``: a file saved is at once visible to every reader and lister (a
      local file system, memory). Object stores and network file systems may show new files
      late; the lock protocol then waits before it re-checks for competing locks.
    - ``io_workers``: how many threads should move data to or from the store (at least 1).
    - ``load_into``: ``Storage.load_into`` reads straight into the caller's buffer; if
      False it is served by ``load`` and one copy (:func:`load_by_copy`).
    - ``small_files_apart``: small files are best worked on by one thread of their own
      beside the threads for large data (see :func:`small_files_apart`).

    A wrapper reports its inner store's capabilities, changed only where it changes them.
    """

    strongly_consistent: bool
    io_workers: int
    load_into: bool
    small_files_apart: bool

    def __post_init__(self) -> None:
        if self.io_workers < 1:
            raise ValueError("io_workers must be at least 1")

    @classmethod
    def local(cls, *, load_into: bool) -> Capabilities:
        """Return the capabilities of a local file system or of memory: strongly consistent;
        one I/O thread per core (2 to 8), since more threads only contend for the GIL and the
        kernel; small files on a thread of their own."""
        return cls(strongly_consistent=True, io_workers=max(2, min(8, os.cpu_count() or 2)),
                   load_into=load_into, small_files_apart=True)

    @classmethod
    def remote(cls) -> Capabilities:
        """Return the capabilities of an object store (or a network file system): new files
        may show late; 8 I/O threads, since ranged reads and uploads are latency-bound;
        small files stay on the pool, their transfers wait on the network; no reads into a
        buffer."""
        return cls(strongly_consistent=False, io_workers=8, load_into=False,
                   small_files_apart=False)


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

    @property
    def capabilities(self) -> Capabilities:
        """Return what the store declares about itself (a wrapper: its inner store's)."""
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

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read up to ``len(buf)`` bytes from ``offset`` into ``buf``; return how many were
        read (fewer only at the end of the file). Raise NotFound if the file does not exist.

        A store that cannot read straight into a buffer returns ``load_by_copy(self, …)``
        and declares ``capabilities.load_into`` False.
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

    def leftover_temporaries(self, older_than: float) -> tuple[str, ...]:
        """Return the paths (relative to the repository root) of temporary files that
        interrupted writes left behind, last changed more than ``older_than`` seconds ago
        (none for stores whose writes are atomic uploads)."""
        ...

    def remove_temporary(self, path: str) -> None:
        """Remove one of :meth:`leftover_temporaries`."""
        ...


@runtime_checkable
class ChunkedReads(Protocol):
    """A store (or wrapper) that streams ranged reads: see :func:`load_chunks`."""

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        """Return an iterator over the bytes of ``length`` bytes from ``offset``, in order,
        in non-empty chunks handed over as they arrive; together they are what
        ``load(handle, offset, length)`` returns (fewer bytes only at the end of the file).

        Raise NotFound if the file does not exist (on the first ``next`` at the latest).
        A chunk is only ever handed over whole and correct: a transfer that breaks
        raises (TransientStorageError) instead of yielding what it got, and a wrapper that
        retries resumes after the last chunk handed over. A caller that stops early must
        close the iterator (``contextlib.closing``) so the transfer is released.
        """
        ...


def load_chunks(storage: Storage, handle: Handle, offset: int, length: int
                ) -> Iterator[bytes]:
    """Return the bytes of ``length`` bytes of ``handle`` from ``offset`` as an iterator of
    non-empty chunks, in order, as they arrive (see :meth:`ChunkedReads.load_chunks`): from
    a store that streams its reads, else one chunk from ``storage.load``, loaded here and
    now (so in the caller's context: see ``readahead.planned_reads``). Either way, close
    the iterator when stopping early (:func:`close_chunks`)."""
    if isinstance(storage, ChunkedReads):
        return storage.load_chunks(handle, offset, length)
    return load_as_one_chunk(storage, handle, offset, length)


def load_as_one_chunk(storage: Storage, handle: Handle, offset: int, length: int
                      ) -> Iterator[bytes]:
    """Return the range as :func:`load_chunks` does, from one ``storage.load`` made here and
    now: for a store that does not stream, or a wrapper serving a read from itself."""
    data = storage.load(handle, offset, length)
    return iter((data,) if data else ())


def close_chunks(chunks: Iterator[bytes]) -> None:
    """Close an iterator from :func:`load_chunks` (a generator: release its transfer)."""
    close = getattr(chunks, "close", None)  # iterators that hold nothing have none
    if close is not None:
        # Called while giving up on the read (often with its error on the way out):
        # releasing the transfer must not replace that error.
        with contextlib.suppress(Exception):
            close()


def load_into(storage: Storage, handle: Handle, offset: int, buf: memoryview) -> int:
    """Read up to ``len(buf)`` bytes of ``handle`` from ``offset`` into ``buf``; return how
    many were read (fewer only at the end of the file). Raise NotFound if it does not exist.

    A store that declares ``capabilities.load_into`` (the local file system; wrappers report
    their inner store's) reads straight into the buffer; others are served by ``load`` and
    one copy. Restore and check read every pack this way into a buffer they reuse: a fresh
    buffer per read would have the kernel fault in every page anew.
    """
    if storage.capabilities.load_into:
        return storage.load_into(handle, offset, buf)
    return load_by_copy(storage, handle, offset, buf)


def load_by_copy(storage: Storage, handle: Handle, offset: int, buf: memoryview) -> int:
    """Serve :func:`load_into` through ``storage.load`` and one copy into ``buf``."""
    data = storage.load(handle, offset, len(buf))
    buf[: len(data)] = data
    return len(data)


def _declared(storage: object) -> Capabilities | None:
    # The helpers below take any object (callers hand over whatever they hold); only a
    # Storage declares capabilities, anything else declares nothing.
    return storage.capabilities if isinstance(storage, Storage) else None


def io_workers(storage: object) -> int:
    """Return how many threads should move data to or from ``storage``: what it declares
    (one per core, 2 to 8, on a local file system or in memory; 8 on object stores, see
    :class:`Capabilities`), and 8 for anything that is not a Storage."""
    caps = _declared(storage)
    return caps.io_workers if caps is not None else Capabilities.remote().io_workers


def small_files_apart(storage: object, workers: int) -> bool:
    """Return whether small files should be worked on by one thread of their own, beside
    ``workers`` threads for large data: where the store declares it (local storage) and
    there is more than one worker. Small files are bound by the GIL (per-file Python, and
    the AES and Poly1305 set-up that ``cryptography`` does while holding it): one thread
    of their own keeps up with two for less CPU, in backup and restore alike (figures in
    docs/performance.md). On object stores their transfers wait on the network, so they
    stay on the pool."""
    caps = _declared(storage)
    return workers > 1 and caps is not None and caps.small_files_apart


def is_strongly_consistent(storage: object) -> bool:
    """Return whether a file saved to ``storage`` is at once visible to every reader and
    lister (a local file system, memory), as the store declares it; wrappers report their
    inner store's. Anything that is not a Storage is not.

    Object stores and network file systems may show new files late; the lock protocol then
    waits before it re-checks for competing locks.
    """
    caps = _declared(storage)
    return caps is not None and caps.strongly_consistent
