"""Open and read source files the way every backup does: never through a symlink, never
blocking on a fifo, without touching access times where the kernel allows it."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence

from airflow_backup.archiver.chunker import MIN_SIZE

__all__ = ["open_ahead", "open_source", "read_small", "read_small_files"]

_WILLNEED: int | None = getattr(os, "POSIX_FADV_WILLNEED", None)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)


def open_source(path: bytes) -> int:
    """Open a source file without following symlinks or blocking on fifos, and (where the
    kernel allows: file owner or root) without updating its access time, as restic does."""
    if _NOATIME:
        try:
            return os.open(path, _OPEN_FLAGS | _NOATIME)
        except PermissionError:
            pass  # O_NOATIME is refused for files we do not own
    return os.open(path, _OPEN_FLAGS)


def open_ahead(path: bytes) -> int | OSError:
    """Open a source file and start reading all of it into the page cache (without waiting);
    return the descriptor, or the error to report for this file."""
    try:
        fd = open_source(path)
    except OSError as exc:
        return exc
    if _WILLNEED is not None:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, _WILLNEED)
    return fd


def read_small(fd: int, hint: int) -> bytes:
    """Read a small file of ``hint`` bytes (its lstat size), or up to MIN_SIZE if it grew."""
    parts: list[bytes] = []
    want = max(hint + 1, 4096)
    while True:
        data = os.read(fd, want)
        if not data:
            break
        if hint and not parts and len(data) == hint:
            # One byte more was asked for and not given: the file ends at its lstat size.
            # This spares a second read (and a GIL hand-off) for every small file.
            return data
        parts.append(data)
        if sum(len(p) for p in parts) >= MIN_SIZE:
            break
    return b"".join(parts)


def read_small_files(batch: Sequence[tuple[bytes, int]]) -> list[bytes | OSError]:
    """Given (path, lstat size) of files below one chunk, return each one's content, or the
    OSError that stopped it (it vanished, or is no longer a regular file). Content of
    MIN_SIZE bytes means the file grew past one chunk: the caller saves it as a large file.

    The whole batch is opened first, with read-ahead, so that with a cold cache its files
    wait for the disk together rather than one after another; every descriptor is closed.
    """
    out: list[bytes | OSError] = []
    fds: list[int | OSError] = []
    try:
        for path, _ in batch:
            fds.append(open_ahead(path))  # one by one: all are closed below
        for (path, size), fd in zip(batch, fds, strict=True):
            if isinstance(fd, OSError):
                out.append(fd)
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(f"{os.fsdecode(path)} changed type while being read")
                out.append(read_small(fd, size))
            except OSError as exc:
                out.append(exc)
    finally:
        for fd in fds:
            if isinstance(fd, int):
                os.close(fd)
    return out
