"""Progress and error events of a backup. The engine never prints; a front end subscribes."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_backup.repository.snapshot import BackupCounters

__all__ = ["ArchiveEvents", "ArchiveStats"]


@dataclass(slots=True)
class ArchiveStats(BackupCounters):
    """Running totals of one backup (restic's summary counters) and the items skipped."""

    errors: list[tuple[str, str]] = field(default_factory=list)


class ArchiveEvents:
    """Callbacks a backup emits. Subclass and override what you need; the defaults do nothing.

    Callbacks may be called from worker threads.
    """

    def item_done(self, path: str, kind: str, size: int, stats: ArchiveStats) -> None:
        """Called after a file, dir or other item has been saved."""

    def stream_read(self, path: str, done: int) -> None:
        """Called as a stream backup reads: ``done`` bytes of ``path`` so far."""

    def item_error(self, path: str, message: str) -> None:
        """Called when an item could not be read and was skipped."""

    def warning(self, message: str) -> None:
        """Called for a problem that leaves the backup complete, e.g. an exclusion marker
        file that exists but does not qualify (restic prints the same warning)."""
