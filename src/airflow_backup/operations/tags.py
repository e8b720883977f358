"""The tags that tie snapshots to jobs: every backup of job ``X`` is tagged ``job=X``; the record
of a drill of ``X`` is tagged ``airflow-backup-drill`` and ``drill-of=X`` — not ``job=X``, so
that ``restic restore latest --tag job=X`` (the runbook's command) and every other filter a user
or a runbook uses for the job's data never picks a drill record. Records written before this
change carry ``job=X`` and the drill tag; :func:`is_backup_of` and :func:`is_drill_of` still
tell them apart.

A job's data-source snapshots also carry ``source=<id>`` (:func:`source_tag`), so that a
runbook can pick one source's snapshots when a job has several of the same kind."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_backup.repository.select import SnapshotFilter
from airflow_backup.repository.snapshot import Snapshot

__all__ = [
    "DRILL_TAG",
    "BackupFilter",
    "SourceFilter",
    "backup_filter",
    "drill_tag",
    "is_backup_of",
    "is_drill_of",
    "job_tag",
    "source_tag",
]

#: Tag of the snapshots that record a restore drill.
DRILL_TAG = "airflow-backup-drill"


def job_tag(job: str) -> str:
    """Return the tag that marks the snapshots of ``job``."""
    return f"job={job}"


def source_tag(redacted_url: str) -> str:
    """Return the tag that marks the snapshots of the data source whose redacted URL (as
    ``SourceURL.redacted()`` gives it, without credentials) is ``redacted_url``: a short
    digest, because a URL may hold commas (restic's tag separator) and is long."""
    return "source=" + hashlib.sha256(redacted_url.encode()).hexdigest()[:12]


def drill_tag(job: str) -> str:
    """Return the tag that marks the drill records of ``job``."""
    return f"drill-of={job}"


def is_drill_of(sn: Snapshot, job: str) -> bool:
    """Return whether ``sn`` records a drill of ``job`` (either tagging)."""
    return DRILL_TAG in sn.tags and (drill_tag(job) in sn.tags or job_tag(job) in sn.tags)


def is_backup_of(sn: Snapshot, job: str) -> bool:
    """Return whether ``sn`` is a backup (not a drill record) of ``job``."""
    return job_tag(job) in sn.tags and DRILL_TAG not in sn.tags


class BackupFilter(SnapshotFilter):
    """A SnapshotFilter that also leaves out drill records."""

    def matches(self, sn: Snapshot) -> bool:
        """Return whether ``sn`` passes the filter and is not a drill record."""
        return DRILL_TAG not in sn.tags and SnapshotFilter.matches(self, sn)


@dataclass(slots=True)
class SourceFilter(BackupFilter):
    """A BackupFilter that also picks one source of a job: the snapshots of the data source
    whose redacted URL is ``source_url``, or with ``source_url`` empty the file snapshots
    (those without a data source). By metadata, so it works for snapshots written before
    the ``source=`` tag existed."""

    source_url: str = ""

    def matches(self, sn: Snapshot) -> bool:
        """Return whether ``sn`` passes the filter and is a snapshot of the chosen source."""
        if not BackupFilter.matches(self, sn):
            return False
        meta = sn.extra.get("airflow_backup")
        source = meta.get("source") if isinstance(meta, dict) else None
        url = source.get("url") if isinstance(source, dict) else None
        return url == self.source_url if self.source_url else url is None


def backup_filter(*, job: str | None = None, tags: Sequence[str] = (),
                  host: str | None = None) -> SnapshotFilter:
    """Return the filter selecting backups (not drill records) of ``job`` (if given) with all
    ``tags`` on ``host`` (if given)."""
    wanted = [t for t in tags if t] + ([job_tag(job)] if job else [])
    return BackupFilter(hosts=[host] if host else [],
                        tags=[",".join(wanted)] if wanted else [])
