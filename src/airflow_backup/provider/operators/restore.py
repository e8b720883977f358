"""RestoreOperator (the restore operation) and RestoreDrillOperator (the drill operation:
restore the newest matching backup into a sandbox, verify it, measure the RTO)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.drill import DrillOptions, drill
from airflow_backup.operations.outcome import parse_choice
from airflow_backup.operations.restore import OnExisting, RestoreRequest, restore
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.operators.base import RepositoryOperator, snapshot_filter

__all__ = ["RestoreDrillOperator", "RestoreOperator"]


class RestoreOperator(RepositoryOperator):
    """Restore one snapshot — ``snapshot`` (``"latest"`` or an id prefix) or the newest one at
    or before ``as_of`` (``"2026-01-02 03:04:05"``, RFC 3339), among the backups (never drill
    records) matching ``job``/``tags``/``host`` — into ``target``: a directory, or a
    data-source URL for source snapshots. ``on_existing`` (source targets): ``fail``
    (default), ``skip`` or ``overwrite`` existing keys, or ``replace`` (overwrite, and restore
    into an existing database/table/prefix); any other value fails the DAG's import. Counts
    and checksums are compared after restoring. Returns what was restored."""

    template_fields: Sequence[str] = ("snapshot", "as_of", "target", "tags", "host")

    def __init__(self, *, target: str, snapshot: str = "latest", as_of: str | None = None,
                 job: str | None = None, tags: Sequence[str] = (), host: str | None = None,
                 on_existing: str = "fail",
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(backup_repository_conn_id=backup_repository_conn_id, **kwargs)
        self.target = target
        self.snapshot = snapshot
        self.as_of = as_of
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.on_existing: OnExisting = parse_choice(OnExisting, on_existing, "on_existing")

    def execute(self, context: Context) -> JSONObject:
        """Restore; return the restore outcome (snapshot id, counts, duration)."""
        with engine_errors():
            spec = self.spec()
            outcome = restore(self.open_repository(), RestoreRequest(
                target=self.target, snapshot=self.snapshot, as_of=self.as_of or "",
                filter=snapshot_filter(job=self.job, tags=self.tags, host=self.host),
                on_existing=self.on_existing), lock_wait=spec.lock_wait)
        result = outcome.to_json()
        result["duration_s"] = round(outcome.duration, 3)
        result["tables"] = len(outcome.tables) if outcome.tables else result["tables"]
        self.log.info("restored snapshot %s into %s", outcome.short_id, outcome.target)
        if outcome.errors:
            raise AirflowFailException(f"restore of {outcome.short_id}: {len(outcome.errors)} "
                                       f"item(s) not restored; first: {outcome.errors[0][0]}")
        return result


class RestoreDrillOperator(RepositoryOperator):
    """A restore drill (the same operation as ``airflow-backup drill``): restore the newest
    backups matching ``job``/``tags``/``host`` into a temporary directory (under ``work_dir``
    if given), verifying every blob (MAC and SHA-256), measure the RTO and, with
    ``record=True`` and a ``job``, record the drill in the repository. A failed drill fails
    the task without retry (it is a finding). Returns the drill outcome with
    ``rto_seconds``."""

    template_fields: Sequence[str] = ("tags", "host", "work_dir")

    def __init__(self, *, job: str | None = None, tags: Sequence[str] = (),
                 host: str | None = None, work_dir: str | None = None,
                 max_rto: float = 3600.0, record: bool = False,
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(backup_repository_conn_id=backup_repository_conn_id, **kwargs)
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.work_dir = work_dir
        self.max_rto = max_rto
        self.record = record

    def execute(self, context: Context) -> JSONObject:
        """Run the drill; return its measurements."""
        with engine_errors():
            spec = self.spec()
        outcome = drill(spec, self.job or "", DrillOptions(max_rto=self.max_rto),
                        flt=snapshot_filter(job=self.job, tags=self.tags, host=self.host),
                        record=self.record and bool(self.job), work_dir=self.work_dir)
        if not outcome.ok:
            error = outcome.error
            raise AirflowFailException(f"restore drill failed: "
                                       f"{error.describe() if error else 'unknown'}")
        result = outcome.to_json()
        result.update(snapshot_id=outcome.snapshots[0] if outcome.snapshots else "",
                      rto_seconds=round(outcome.rto, 3))
        self.log.info("restore drill passed: RTO %.2fs, %d file(s)", outcome.rto,
                      outcome.files)
        return result
