"""Progress and error events of a backup. The engine never prints; a front end subscribes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ArchiveEvents", "ArchiveStats"]


@dataclass(slots=True)
class ArchiveStats:
    """Running totals of one backup; the names follow restic's snapshot summary."""

    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0
    data_added_packed: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


class ArchiveEvents:
    """Callbacks a backup emits. Subclass and override what you need; the defaults do nothing.

    Callbacks may be called from worker threads.
    """

    def item_done(self, path: str, kind: str, size: int, stats: ArchiveStats) -> None:
        """Called after a file, dir or other item has been saved."""

    def item_error(self, path: str, message: str) -> None:
        """Called when an item could not be read and was skipped."""
