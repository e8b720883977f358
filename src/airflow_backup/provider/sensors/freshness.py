"""BackupFreshnessSensor: wait until a recent enough snapshot exists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.triggers.freshness import (
    BackupFreshnessTrigger,
    find_fresh_snapshot,
)

__all__ = ["BackupFreshnessSensor"]


class BackupFreshnessSensor(BaseSensorOperator):
    """Succeed when the repository holds a snapshot matching ``job``/``tags``/``host`` that is
    younger than ``max_age``. With ``deferrable=True`` (default: Airflow's ``[operators]
    default_deferrable``) the wait runs in the triggerer (:class:`BackupFreshnessTrigger`)
    instead of holding a worker slot. Returns (XCom) the fresh snapshot's id, time and age."""

    template_fields: Sequence[str] = ("tags", "host")

    def __init__(self, *, max_age: timedelta, job: str | None = None,
                 tags: Sequence[str] = (), host: str | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable",
                                                    fallback=False),
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_age = max_age
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.deferrable = deferrable
        self.backup_repository_conn_id = backup_repository_conn_id
        self._found: dict[str, Any] | None = None

    def poke(self, context: Context) -> bool:
        """Look once; remember the snapshot found."""
        with engine_errors():
            self._found = find_fresh_snapshot(
                self.backup_repository_conn_id, job=self.job, tags=self.tags, host=self.host,
                max_age_seconds=self.max_age.total_seconds())
        return self._found is not None

    def execute(self, context: Context) -> Any:
        """Poke (or defer to the trigger when deferrable and nothing is fresh yet)."""
        if not self.deferrable:
            super().execute(context)
            return self._found
        if self.poke(context):
            return self._found
        self.defer(trigger=BackupFreshnessTrigger(
            backup_repository_conn_id=self.backup_repository_conn_id,
            max_age_seconds=self.max_age.total_seconds(), job=self.job, tags=self.tags,
            host=self.host, poke_interval=float(self.poke_interval)),
            method_name="execute_complete", timeout=timedelta(seconds=float(self.timeout)))
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: return the snapshot, or fail on its error."""
        if event.get("status") != "success":
            raise AirflowFailException(str(event.get("message", "freshness trigger failed")))
        snapshot: dict[str, Any] = event["snapshot"]
        return snapshot
