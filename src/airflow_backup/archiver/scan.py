"""The scan ahead of a backup: how many files and bytes its paths hold, for progress with a
total, a percentage and an ETA (restic's scanner).

:class:`Scanner` walks the backup's paths under the backup's own exclusion rules
(:func:`~airflow_backup.archiver.warm.read_listing`) in a background thread, reading only
directory listings and ``lstat`` results, and adds up regular files and their sizes as it
goes; :meth:`Scanner.totals` can be read at any time. A directory it cannot list is skipped
(the backup itself meets and reports the problem). It reports nothing and prints nothing.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_backup.archiver.exclude import Exclusions
from airflow_backup.archiver.warm import BackgroundWalk, read_listing

__all__ = ["ScanTotals", "Scanner"]


@dataclass(frozen=True, slots=True)
class ScanTotals:
    """What the scan has found so far: regular files, their bytes, directories; ``done``
    once every path was walked."""

    files: int = 0
    bytes: int = 0
    dirs: int = 0
    done: bool = False


class Scanner(BackgroundWalk):
    """A context manager: scan ``paths`` with ``exclusions`` in a background thread until
    it is finished or the block exits."""

    _thread_name = "backup-scan"

    def __init__(self, paths: Sequence[str], exclusions: Exclusions) -> None:
        super().__init__(paths)
        # A target inside another is counted with it, once.
        self._targets = [t for t in self._targets if not any(
            t.startswith(o.rstrip(b"/") + b"/") for o in self._targets if o != t)]
        self._exclusions = exclusions
        self._lock = threading.Lock()
        self._totals = ScanTotals()

    def totals(self) -> ScanTotals:
        """Return the totals so far."""
        with self._lock:
            return self._totals

    def _add(self, files: int, size: int, dirs: int) -> None:
        with self._lock:
            t = self._totals
            self._totals = ScanTotals(t.files + files, t.bytes + size, t.dirs + dirs)

    def _walk(self) -> None:
        stopped = self.stopped
        stack: list[bytes] = []
        for target in self._targets:
            try:
                s = os.lstat(target)
            except OSError:
                continue
            if stat.S_ISDIR(s.st_mode):
                stack.append(target)
            elif stat.S_ISREG(s.st_mode):
                self._add(1, s.st_size, 0)
        while stack and not stopped():
            top = stack.pop()
            listing = read_listing(top, self._exclusions, stopped)
            if listing is None:
                continue
            self._add(listing.files, listing.size, 1)
            prefix = top.rstrip(b"/") + b"/"
            stack.extend(prefix + name for name in reversed(listing.subdirs))
        if not stopped():
            with self._lock:
                t = self._totals
                self._totals = ScanTotals(t.files, t.bytes, t.dirs, done=True)
