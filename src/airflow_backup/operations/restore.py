"""The restore operation: one snapshot into a directory, or a data-source snapshot into a
database, table, bucket prefix or Airflow home — for ``airflow-backup restore``, RestoreOperator
and the restore drill alike.

Snapshot selection is restic's (``latest``, an id prefix, host/tag/path filters, ``--as-of``).
A source restore compares row counts and checksums with those recorded at backup time.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.outcome import Outcome, Status
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter, resolve_snapshot
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.restorer.restore import RestoreOptions, Restorer, RestoreStats

__all__ = ["OnExisting", "RestoreOutcome", "RestoreRequest", "TableCheck", "restore"]


class OnExisting(enum.StrEnum):
    """What a source restore does with what already exists in the target.

    FAIL: refuse (the default). SKIP: keep existing keys (Airflow variables, connections,
    pools), restore the rest. OVERWRITE: replace existing keys. REPLACE: OVERWRITE, and
    restore into an existing database/table/prefix (``--force``).
    """

    FAIL = "fail"
    SKIP = "skip"
    OVERWRITE = "overwrite"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """Which snapshot (``snapshot``: ``latest`` or an id prefix, optionally ``ID:SUBPATH``
    for a file restore; ``as_of``: the newest at or before a time, after ``filter``) and where
    to (``target``: a directory, or a source URL). A directory restore saves everything it
    can; ``verify`` then reads every restored file back and compares it with the snapshot."""

    target: str
    snapshot: str = "latest"
    filter: SnapshotFilter = field(default_factory=SnapshotFilter)
    as_of: str = ""
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    clean: bool = False
    force: bool = False
    on_existing: OnExisting = OnExisting.FAIL
    database: str = ""
    verify: bool = False
    # restic's restore flags (a directory restore): --dry-run, --overwrite, --delete, --sparse
    dry_run: bool = False
    overwrite: str = "always"
    delete: bool = False
    sparse: bool = False

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError("the restore target must not be empty")
        if (self.delete and os.path.normpath(self.target) == "/" and not self.includes
                and not self.excludes):
            raise ConfigError("'--target / --delete' must be combined with an include or "
                              "exclude filter")


@dataclass(frozen=True, slots=True)
class TableCheck:
    """A source restore's comparison of one table (or object set) with the backup."""

    table: str
    rows: int
    restored_rows: int
    checksum_compared: bool
    ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreOutcome(Outcome):
    """What was restored from which snapshot; ``partial`` when some items could not be
    restored or failed verification (``errors``: (path, reason); ``verified``: files read
    back and found equal to the snapshot)."""

    snapshot_id: str
    snapshot_time: str
    target: str
    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes: int = 0
    verified: int = 0
    errors: tuple[tuple[str, str], ...] = ()
    tables: tuple[TableCheck, ...] = ()
    # restic's restore counters (see RestoreStats): items to restore and their bytes, items
    # finished, skipped by the overwrite rule, paths deleted
    total_files: int = 0
    total_bytes: int = 0
    files_restored: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_deleted: int = 0
    details: JSONObject = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        """Return the first 8 hex digits of the snapshot id."""
        return self.snapshot_id[:8]


def restore(repo: Repository, request: RestoreRequest, *, lock_wait: float = 0.0,
            on_selected: Callable[[Snapshot], None] | None = None,
            on_item: Callable[[str, str, int, RestoreStats], None] | None = None
            ) -> RestoreOutcome:
    """Restore per ``request`` under a shared lock (``on_selected`` is told which snapshot
    was picked before anything is written; ``on_item(action, path, size, counters so far)``
    of each item of a directory restore, restic's actions: restored, updated, unchanged,
    deleted -- also in a dry run). A directory restore salvages: what cannot be
    restored (lost or damaged data, unsafe names, failed writes or verification) is listed in
    ``errors`` and the status is partial. Raise SnapshotNotFound, ConfigError, RestoreError
    (RestoreTargetExists, RestoreMismatch, …) or a storage error."""
    from airflow_backup.sources.registry import is_source_url

    started = time.monotonic()
    selector, _, subpath = request.snapshot.partition(":")
    to_source = is_source_url(request.target)
    if to_source and subpath:
        raise ConfigError("a data-source restore takes a whole snapshot, not ID:SUBPATH")
    if to_source and request.verify:
        raise ConfigError("verify is for a directory restore; a data-source restore always "
                          "compares row counts and checksums")
    with repo.lock(exclusive=False, retry_seconds=lock_wait, preload_index=True):
        sn = resolve_snapshot(repo, selector or None, request.filter, request.as_of or None)
        if on_selected is not None:
            on_selected(sn)
        if to_source:
            from airflow_backup.sources.actions import restore_source
            from airflow_backup.sources.base import SourceRestoreOptions

            on_existing = request.on_existing
            report = restore_source(repo, sn, request.target, SourceRestoreOptions(
                clean=request.clean, force=request.force or on_existing is OnExisting.REPLACE,
                on_existing=("overwrite" if on_existing is OnExisting.REPLACE
                             else on_existing.value), database=request.database))
            return RestoreOutcome(
                snapshot_id=sn.id, snapshot_time=sn.time, target=report.target,
                tables=tuple(TableCheck(c.table, c.rows, c.restored_rows or 0,
                                        bool(c.checksum),
                                        c.ok) for c in report.checks),
                details=dict(report.details), duration=time.monotonic() - started)
        if request.dry_run and request.verify:
            raise ConfigError("--dry-run and --verify are mutually exclusive")
        restorer = Restorer(repo)
        each_item: Callable[[str, str, int], None] | None = None
        if on_item is not None:
            tell = on_item

            def each_item(action: str, path: str, size: int) -> None:
                tell(action, path, size, restorer.stats)

        stats = restorer.restore(sn, RestoreOptions(
            target=request.target, includes=list(request.includes),
            excludes=list(request.excludes), subpath=subpath or "/", salvage=True,
            verify=request.verify, dry_run=request.dry_run, overwrite=request.overwrite,
            delete=request.delete, sparse=request.sparse, on_item=each_item))
    return RestoreOutcome(
        snapshot_id=sn.id, snapshot_time=sn.time, target=request.target, files=stats.files,
        dirs=stats.dirs, others=stats.others, bytes=stats.bytes, verified=stats.verified,
        errors=tuple(stats.errors), total_files=stats.total, total_bytes=stats.total_bytes,
        files_restored=stats.restored, files_skipped=stats.skipped,
        bytes_skipped=stats.bytes_skipped, files_deleted=stats.deleted,
        status=Status.PARTIAL if stats.errors else Status.SUCCESS,
        warnings=tuple(f"{p}: {why}" for p, why in stats.errors[:10]),
        duration=time.monotonic() - started)


