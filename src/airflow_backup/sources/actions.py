"""Back up a data source into a snapshot, and restore one: the export → validate → store and
restore → compare pipelines, with cleanup always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from airflow_backup.archiver.events import ArchiveStats
from airflow_backup.errors import ConfigError, RestoreMismatch
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.sources.base import (
    RestoreReport,
    SourceRestoreOptions,
    StoredExport,
    mismatch_summary,
)
from airflow_backup.sources.metadata import (
    SourceDescription,
    SourceMetadata,
    as_json,
    read_metadata,
)
from airflow_backup.sources.registry import open_source, source_for_kind
from airflow_backup.sources.snapshot_writer import SnapshotTreeReader, SnapshotWriter, WriterOptions

__all__ = [
    "METADATA_FORMAT",
    "SourceBackupResult",
    "backup_source",
    "restore_source",
    "source_metadata",
    "stored_exports",
]

#: Version of the ``airflow_backup`` object a source snapshot carries.
METADATA_FORMAT = 1


@dataclass(frozen=True, slots=True)
class SourceBackupResult:
    """The saved snapshot, what was stored, and the metadata recorded in it."""

    snapshot: Snapshot
    stats: ArchiveStats
    metadata: SourceMetadata


def source_metadata(snapshot: Snapshot) -> SourceMetadata | None:
    """Return the ``airflow_backup`` object of a source snapshot, or None for file backups."""
    return read_metadata(snapshot.extra.get("airflow_backup"))


def stored_exports(repo: Repository, url: str, before: Snapshot | None = None
                   ) -> list[StoredExport]:
    """Return the exports of the source with redacted URL ``url``, oldest first (only those
    older than ``before`` if given)."""
    out = []
    for sn in repo.list_snapshots():
        meta = source_metadata(sn)
        if meta is None or meta["source"].get("url") != url:
            continue
        if before is not None and (sn.time_ns, sn.id) >= (before.time_ns, before.id):
            continue
        out.append(StoredExport(sn.id, sn.time, meta, SnapshotTreeReader(repo, sn)))
    return out


def backup_source(repo: Repository, url: str, *, tags: list[str] | None = None,
                  hostname: str | None = None, time: datetime | None = None,
                  allow_password: bool = False,
                  on_read: Callable[[str, int], None] | None = None) -> SourceBackupResult:
    """Export the source at ``url`` into a new snapshot and return it. ``on_read`` is
    told the bytes of the export read so far (progress).

    The snapshot is written only after the export finished and its stored copy passed the
    source's validation; on any error nothing is listed, and temp files and child
    processes are gone when this returns or raises.
    """
    source = open_source(url, allow_password=allow_password)
    try:
        described: SourceDescription = {"kind": source.kind, "url": source.url.redacted(),
                                        **source.describe()}
        history = stored_exports(repo, described["url"])
        writer = SnapshotWriter(repo, WriterOptions(tags=list(tags or []), hostname=hostname,
                                                    time=time, on_read=on_read))
        facts = source.export(writer, history[-1] if history else None)
        provisional = writer.prepare()
        validation = source.validate(SnapshotTreeReader(repo, provisional))
        metadata: SourceMetadata = {"format": METADATA_FORMAT, "source": described,
                                    "export": as_json(facts), "validation": as_json(validation)}
        snapshot = writer.commit(as_json(metadata))
        return SourceBackupResult(snapshot, writer.stats, metadata)
    finally:
        source.cleanup()


def restore_source(repo: Repository, snapshot: Snapshot, target: str,
                   options: SourceRestoreOptions | None = None) -> RestoreReport:
    """Restore a source snapshot into ``target`` (a URL) and compare counts and checksums.

    Raise ConfigError if the snapshot is not a source backup or the target is of another
    kind, RestoreTargetExists if the target exists and ``options`` do not allow replacing
    it, and RestoreMismatch (after restoring) if the comparison fails.
    """
    meta = source_metadata(snapshot)
    if meta is None:
        raise ConfigError(f"snapshot {snapshot.short_id} is not a data-source backup; "
                          "restore it into a directory instead")
    kind = str(meta["source"].get("kind", ""))
    source = source_for_kind(kind, target)
    stored = StoredExport(snapshot.id, snapshot.time, meta, SnapshotTreeReader(repo, snapshot))
    history = stored_exports(repo, str(meta["source"].get("url", "")), before=snapshot)
    try:
        report = source.restore(stored, history, options or SourceRestoreOptions())
    finally:
        source.cleanup()
    bad = report.mismatches()
    if bad:
        raise RestoreMismatch(
            f"restored {report.target}, but {mismatch_summary(bad)}"
            + (f" ({report.details['hint']})" if report.details.get("hint") else ""))
    return report
