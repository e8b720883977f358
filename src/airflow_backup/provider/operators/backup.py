"""BackupOperator: back up paths or a data source into a snapshot (the backup operation) and
emit an event on the job's Asset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.backup import BackupRequest, backup
from airflow_backup.provider.assets import backup_asset
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.operators.base import (
    OnIncomplete,
    RepositoryOperator,
    finish,
    job_tag,
    on_incomplete_choice,
)

__all__ = ["BackupOperator", "backup_asset"]


class BackupOperator(RepositoryOperator):
    """Back up ``paths`` (files, directories) or one ``source_url`` (``postgresql://…``,
    ``sqlite:///…``, ``airflow:///AIRFLOW_HOME``, ``s3://bucket/prefix``, … — see
    docs/sources.md) into a new snapshot
    tagged ``job=<job>`` (the tag backup jobs use) plus ``tags``.

    Returns (XCom) a small JSON summary: status, snapshot id, time, bytes added, files,
    duration. Emits an event on :func:`backup_asset` (added to ``outlets``). Non-retryable
    engine errors fail the task without retries (provider.errors). A backup that skipped
    unreadable files (``partial``) fails the task after its snapshot was saved, unless
    ``on_incomplete="warn"``: then it succeeds with ``status: partial`` in its XCom.
    """

    template_fields: Sequence[str] = ("paths", "source_url", "tags", "host", "excludes")

    def __init__(self, *, job: str, paths: Sequence[str] = (), source_url: str | None = None,
                 tags: Sequence[str] = (), host: str | None = None,
                 excludes: Sequence[str] = (), on_incomplete: str = "fail",
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        asset = backup_asset(job)
        outlets = list(kwargs.pop("outlets", None) or [])
        if asset not in outlets:
            outlets.append(asset)
        super().__init__(backup_repository_conn_id=backup_repository_conn_id,
                         outlets=outlets, **kwargs)
        self.job = job
        self.asset = asset
        self.paths = list(paths)
        self.source_url = source_url
        self.tags = list(tags)
        self.host = host
        self.excludes = list(excludes)
        self.on_incomplete: OnIncomplete = on_incomplete_choice(on_incomplete)

    def execute(self, context: Context) -> JSONObject:
        """Run the backup; return the summary and record the Asset event."""
        if bool(self.paths) == bool(self.source_url):
            raise AirflowFailException("give either paths or source_url (exactly one)")
        with engine_errors():
            request = BackupRequest(
                paths=tuple(self.paths), sources=(self.source_url,) if self.source_url else (),
                excludes=tuple(self.excludes), tags=(*self.tags, job_tag(self.job)),
                hostname=self.host, job=self.job)
            outcome = backup(self.spec(), request)
        (snap,) = outcome.snapshots
        summary: JSONObject = {
            "status": outcome.status.value, "snapshot_id": snap.id, "short_id": snap.short_id,
            "time": snap.time,
            "job": self.job, "repository": outcome.repository,
            "bytes_added": snap.added, "bytes_processed": snap.bytes, "files": snap.files,
            "duration_s": round(outcome.duration, 3),
            "source": snap.source if snap.kind not in ("files", "stream") else None,
            "warnings": list(outcome.warnings)}
        context["outlet_events"][self.asset].extra = {
            k: summary[k] for k in ("status", "snapshot_id", "time", "bytes_added",
                                    "bytes_processed", "repository", "job")}
        self.log.info("snapshot %s saved (%d bytes added) in %.2fs", snap.short_id,
                      snap.added, outcome.duration)
        finish(outcome, self.on_incomplete, f"backup of job {self.job}", self.log)
        return summary
