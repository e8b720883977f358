"""Shared plumbing of the repository operators: the connection id and the snapshot filter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_backup.jobs.steps.common import DRILL_TAG, job_tag
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["RepositoryOperator", "job_tag", "snapshot_filter"]


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


class JobSnapshotFilter(SnapshotFilter):
    """A SnapshotFilter that also leaves out the drill records backup jobs write."""

    def matches(self, sn: Snapshot) -> bool:
        """Return whether ``sn`` passes the filter and is not a drill record."""
        return DRILL_TAG not in sn.tags and SnapshotFilter.matches(self, sn)


def snapshot_filter(*, job: str | None, tags: Sequence[str], host: str | None
                    ) -> SnapshotFilter:
    """Return the filter selecting backups (not drill records) of ``job`` (if given, by the
    jobs' tag ``job=<job>``) with all ``tags`` on ``host`` (if given)."""
    wanted = [t for t in tags if t] + ([job_tag(job)] if job else [])
    return JobSnapshotFilter(hosts=[host] if host else [],
                             tags=[",".join(wanted)] if wanted else [])
