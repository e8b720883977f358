"""The tags that tie snapshots to jobs: every backup of job ``X`` is tagged ``job=X``; a drill
record also carries ``airflow-backup-drill`` and is never taken for a backup (nor removed by a
job's retention, nor restored by ``latest --tag job=X`` through the job filter)."""

from __future__ import annotations

from collections.abc import Sequence

from airflow_backup.repository.select import SnapshotFilter
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["DRILL_TAG", "BackupFilter", "backup_filter", "is_backup_of", "job_tag"]

#: Tag of the snapshots that record a restore drill.
DRILL_TAG = "airflow-backup-drill"


def job_tag(job: str) -> str:
    """Return the tag that marks the snapshots of ``job``."""
    return f"job={job}"


def is_backup_of(sn: Snapshot, job: str) -> bool:
    """Return whether ``sn`` is a backup (not a drill record) of ``job``."""
    return job_tag(job) in sn.tags and DRILL_TAG not in sn.tags


class BackupFilter(SnapshotFilter):
    """A SnapshotFilter that also leaves out drill records."""

    def matches(self, sn: Snapshot) -> bool:
        """Return whether ``sn`` passes the filter and is not a drill record."""
        return DRILL_TAG not in sn.tags and SnapshotFilter.matches(self, sn)


def backup_filter(*, job: str | None = None, tags: Sequence[str] = (),
                  host: str | None = None) -> SnapshotFilter:
    """Return the filter selecting backups (not drill records) of ``job`` (if given) with all
    ``tags`` on ``host`` (if given)."""
    wanted = [t for t in tags if t] + ([job_tag(job)] if job else [])
    return BackupFilter(hosts=[host] if host else [],
                        tags=[",".join(wanted)] if wanted else [])
