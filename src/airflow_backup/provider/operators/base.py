"""Shared plumbing of the repository operators: the connection, the snapshot filter and what
a partial or degraded outcome does to the task."""

from __future__ import annotations

import enum
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.operations.outcome import Outcome, Status, parse_choice
from airflow_backup.operations.spec import RepositorySpec
from airflow_backup.operations.tags import backup_filter, job_tag
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.repository.repo import Repository

__all__ = ["OnIncomplete", "RepositoryOperator", "finish", "job_tag", "on_incomplete_choice",
           "snapshot_filter"]

snapshot_filter = backup_filter


class OnIncomplete(enum.StrEnum):
    """What a partial (unreadable files) or degraded (fallback repository) outcome does to
    the task: FAIL it (red, failure callbacks run; the snapshot stays stored), or WARN (the
    task succeeds, logs a warning, and its XCom carries ``status`` partial/degraded)."""

    FAIL = "fail"
    WARN = "warn"


def finish(outcome: Outcome, on_incomplete: OnIncomplete, what: str, log: Any) -> None:
    """Apply ``on_incomplete`` to ``outcome``: raise AirflowFailException (no retry: the data
    is stored) for a partial or degraded outcome under FAIL, else log its warnings."""
    if outcome.status in (Status.PARTIAL, Status.DEGRADED):
        detail = "; ".join(outcome.warnings)
        if on_incomplete is OnIncomplete.FAIL:
            raise AirflowFailException(f"{what}: {outcome.status.value.upper()}: {detail}")
        log.warning("%s: %s: %s", what, outcome.status.value.upper(), detail)


class RepositoryOperator(BaseOperator):
    """Base of the operators that work on one repository (``backup_repository_conn_id``)."""

    def __init__(self, *, backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_repository_conn_id = backup_repository_conn_id

    @property
    def hook(self) -> BackupRepositoryHook:
        """The hook for this operator's connection."""
        return BackupRepositoryHook(self.backup_repository_conn_id)

    def spec(self) -> RepositorySpec:
        """Return the connection's repository spec."""
        return self.hook.get_spec()

    def open_repository(self) -> Repository:
        """Open the repository (engine errors propagate; callers map them)."""
        return self.hook.get_repository()


def on_incomplete_choice(value: str | OnIncomplete) -> OnIncomplete:
    """Return the OnIncomplete for ``value``. Raise ConfigError naming the allowed values."""
    return parse_choice(OnIncomplete, value, "on_incomplete")
