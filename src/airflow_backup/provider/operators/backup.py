"""BackupOperator: back up paths or a data source into a snapshot and emit an Asset event."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.archiver.warm import MetadataWarmer
from airflow_backup.errors import ConfigError, PartialBackup
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.operators.base import RepositoryOperator, job_tag
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.sources.actions import backup_source
from airflow_backup.storage.cache import resolve_cache_root

__all__ = ["BackupOperator", "backup_asset"]

ASSET_SCHEME = "airflow-backup"


def backup_asset(job: str,
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name
                 ) -> Asset:
    """Return the Asset of ``job`` in the repository of ``backup_repository_conn_id``:
    ``airflow-backup://<conn id>/<job>`` (one per repository and job). Drill or retention
    DAGs schedule on it."""
    return Asset(uri=f"{ASSET_SCHEME}://{backup_repository_conn_id}/{job}",
                 name=f"backup__{backup_repository_conn_id}__{job}", group="airflow-backup")


def _summary(snapshot: Snapshot, job: str, repo_id: str, duration: float,
             bytes_added: int, files: int, source: str | None) -> dict[str, Any]:
    return {"snapshot_id": snapshot.id, "short_id": snapshot.short_id, "time": snapshot.time,
            "job": job, "repository_id": repo_id, "bytes_added": bytes_added,
            "bytes_processed": snapshot.summary.total_bytes_processed if snapshot.summary
            else 0, "files": files, "duration_s": round(duration, 3), "source": source}


class BackupOperator(RepositoryOperator):
    """Back up ``paths`` (files, directories) or one ``source_url`` (``postgresql://…``,
    ``sqlite:///…``, ``airflow-metadata://``, … — see docs/sources.md) into a new snapshot
    tagged ``job=<job>` (the tag backup jobs use)` plus ``tags``.

    Returns (XCom) a small JSON summary: snapshot id, time, bytes added, files, duration.
    Emits an event on :func:`backup_asset` (added to ``outlets``) carrying the same facts.
    Non-retryable engine errors fail the task without retries (provider.errors); a backup
    that skipped unreadable files fails too (PartialBackup), after its snapshot was saved.
    """

    template_fields: Sequence[str] = ("paths", "source_url", "tags", "host", "excludes")

    def __init__(self, *, job: str, paths: Sequence[str] = (), source_url: str | None = None,
                 tags: Sequence[str] = (), host: str | None = None,
                 excludes: Sequence[str] = (),
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        asset = backup_asset(job, backup_repository_conn_id)
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

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the backup; return the summary and record the Asset event."""
        if bool(self.paths) == bool(self.source_url):
            raise AirflowFailException("give either paths or source_url (exactly one)")
        tags = [*self.tags, job_tag(self.job)]
        started = time.monotonic()
        source: str | None = None
        with engine_errors():
            if not self.source_url and not all(isinstance(p, str) and p for p in self.paths):
                raise ConfigError("paths must be non-empty strings")
            # The paths' metadata is read into the kernel's cache while the key is derived.
            warmer = MetadataWarmer([] if self.source_url else self.paths, self.excludes)
            with warmer:
                repo = self.open_repository()
            with repo.lock(exclusive=False):
                if self.source_url:
                    res = backup_source(repo, self.source_url, tags=tags, hostname=self.host)
                    snapshot, stats = res.snapshot, res.stats
                    source = str(res.metadata["source"].get("url", ""))
                else:
                    result = Archiver(repo, warmed=warmer).backup(BackupOptions(
                        paths=self.paths, excludes=self.excludes, tags=tags,
                        hostname=self.host, dir_cache=str(resolve_cache_root())))
                    snapshot, stats = result.snapshot, result.stats
                    if result.partial:
                        raise PartialBackup(
                            f"snapshot {snapshot.short_id} saved, but {len(stats.errors)} "
                            f"item(s) could not be read; first: {stats.errors[0][0]}",
                            snapshot.id, stats.errors)
        summary = _summary(snapshot, self.job, repo.config.id, time.monotonic() - started,
                           stats.data_added, stats.total_files_processed, source)
        context["outlet_events"][self.asset].extra = {
            k: summary[k] for k in ("snapshot_id", "time", "bytes_added", "bytes_processed",
                                    "repository_id", "job")}
        self.log.info("snapshot %s saved (%d bytes added) in %.2fs", snapshot.short_id,
                      stats.data_added, summary["duration_s"])
        return summary
