"""Warm the kernel's inode and dentry caches for a backup's paths while the key is derived.

Opening a repository spends most of its time in scrypt (about 0.3–0.5 s, by design), which
releases the interpreter lock and uses one core. With a cold page cache, the walk that follows
waits for the disk at every ``lstat``, one at a time. :class:`MetadataWarmer` walks the same
paths in a background thread during the key derivation, so that those waits are paid while the
process would otherwise only be waiting for scrypt. It reads no file contents, records nothing
and reports nothing: the backup's own walk is the one that sees (and reports) every entry.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Sequence
from types import TracebackType

from airflow_backup.archiver.patterns import PatternSet

__all__ = ["MetadataWarmer"]


class MetadataWarmer:
    """A context manager: ``lstat`` everything below ``paths`` (skipping ``excludes``) in a
    background thread, in the backup walk's order, until the block exits.

    Leaving the block stops the thread and waits for it; an entry that cannot be read is
    skipped silently. Given no paths (a stream backup), it does nothing.
    """

    def __init__(self, paths: Sequence[str], excludes: Sequence[str] = ()) -> None:
        self._targets = sorted({os.fsencode(os.path.abspath(p)) for p in paths})
        self._excludes = PatternSet(list(excludes))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.visited = 0

    def __enter__(self) -> MetadataWarmer:
        if self._targets:
            self._thread = threading.Thread(target=self._walk, name="warm-metadata",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the walk to finish; return whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _walk(self) -> None:
        stack = list(reversed(self._targets))
        stopped = self._stop.is_set
        excludes = self._excludes
        while stack and not stopped():
            top = stack.pop()
            try:
                with os.scandir(top) as it:
                    names = sorted(e.name for e in it)
            except OSError:
                continue  # not a directory, or unreadable: the walk will say so
            prefix = top.rstrip(b"/") + b"/"
            subdirs: list[bytes] = []
            for name in names:
                if stopped():
                    return
                path = prefix + name
                if excludes and excludes.matches(path):
                    continue
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                self.visited += 1
                if stat.S_ISDIR(mode):
                    subdirs.append(path)
            stack.extend(reversed(subdirs))
