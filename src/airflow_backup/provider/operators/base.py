"""Shared plumbing of the repository operators: the connection id and the snapshot filter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter

__all__ = ["RepositoryOperator", "job_tag", "snapshot_filter"]


def job_tag(job: str) -> str:
    """Return the tag BackupOperator puts on every snapshot of ``job`` (``job:<job>``)."""
    return f"job:{job}"


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

    def open_repository(self) -> Repository:
        """Open the repository (engine errors propagate; callers map them)."""
        return self.hook.get_repository()


def snapshot_filter(*, job: str | None, tags: Sequence[str], host: str | None
                    ) -> SnapshotFilter:
    """Return the filter selecting snapshots of ``job`` (if given) with all ``tags`` on
    ``host`` (if given)."""
    wanted = [t for t in tags if t] + ([job_tag(job)] if job else [])
    return SnapshotFilter(hosts=[host] if host else [], tags=[",".join(wanted)] if wanted else [])
