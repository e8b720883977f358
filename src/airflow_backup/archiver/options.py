"""What a backup of paths is asked to do (:class:`BackupOptions`) and what it gives
(:class:`BackupResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from airflow_backup.archiver.events import ArchiveStats
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["BackupOptions", "BackupResult"]


@dataclass(slots=True)
class BackupOptions:
    """What a backup stores and how the snapshot is labelled.

    ``excludes``, ``iexcludes``, ``exclude_if_present``, ``exclude_caches``,
    ``exclude_larger_than`` (bytes, see :func:`airflow_backup.archiver.exclude.parse_size`)
    and ``one_file_system`` leave paths out as restic's flags of the same names do
    (:mod:`airflow_backup.archiver.exclude`); only ``excludes`` is recorded in the snapshot
    (restic records none of the others either).
    ``parent`` names the parent snapshot (id prefix); by default it is the latest snapshot of
    the same host and paths. ``force`` re-reads every file. ``with_atime`` stores real access
    times (by default atime = mtime, as restic does, which keeps unchanged trees identical).
    ``dir_cache`` is a cache root where the backup remembers its directories, so that the
    next one can reuse the trees of those unchanged without loading them
    (:mod:`airflow_backup.archiver.known`); None leaves it off. ``skip_if_unchanged``
    saves no snapshot when the tree equals the parent's (restic's ``--skip-if-unchanged``).
    """

    paths: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    iexcludes: list[str] = field(default_factory=list)
    exclude_if_present: list[str] = field(default_factory=list)
    exclude_caches: bool = False
    exclude_larger_than: int | None = None
    one_file_system: bool = False
    tags: list[str] = field(default_factory=list)
    hostname: str | None = None
    time: datetime | None = None
    metadata: JSONObject = field(default_factory=dict)
    parent: str | None = None
    force: bool = False
    with_atime: bool = False
    workers: int | None = None
    dir_cache: str | None = None
    skip_if_unchanged: bool = False


@dataclass(slots=True)
class BackupResult:
    """The saved snapshot and the items that could not be read (empty if complete)."""

    snapshot: Snapshot
    stats: ArchiveStats
    #: False when ``skip_if_unchanged`` found the parent identical: ``snapshot`` was not
    #: saved (its id is empty).
    saved: bool = True

    @property
    def partial(self) -> bool:
        """Return whether some items were skipped because they could not be read."""
        return bool(self.stats.errors)
