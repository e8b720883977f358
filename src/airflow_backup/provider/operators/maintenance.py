"""VerifyBackupOperator (check) and ForgetPruneOperator (retention)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_backup.errors import ConfigError, IntegrityError
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.operators.base import RepositoryOperator, snapshot_filter
from airflow_backup.repository.check import CheckOptions, check_repository
from airflow_backup.repository.forget import ExpirePolicy, apply_policy, parse_duration
from airflow_backup.repository.groups import group_snapshots, parse_group_by
from airflow_backup.repository.prune import PruneOptions, execute_prune, plan_prune
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import select_snapshots

__all__ = ["ForgetPruneOperator", "VerifyBackupOperator", "run_check"]


def run_check(repo: Repository, options: CheckOptions, lock_wait: float = 0.0
              ) -> dict[str, Any]:
    """Check ``repo`` under a shared lock (waiting up to ``lock_wait`` seconds for it);
    return the counts (JSON). Raise IntegrityError naming the first problem if anything is
    damaged."""
    started = time.monotonic()
    with repo.lock(exclusive=False, retry_seconds=lock_wait):
        report = check_repository(repo, options)
    if not report.ok:
        raise IntegrityError(f"check found {len(report.errors)} error(s); first: "
                             f"{report.errors[0]}")
    return {"ok": True, "snapshots": report.snapshots, "packs": report.packs,
            "packs_read": report.packs_read, "duration_s": round(time.monotonic() - started, 3)}


class VerifyBackupOperator(RepositoryOperator):
    """Check the repository's structure (like ``restic check``) and, with
    ``read_data_subset`` (``"5%"``, ``"1/10"``, ``"500M"``), re-read and verify that part of
    the stored data. Damage fails the task without retry (IntegrityError). Returns counts."""

    template_fields: Sequence[str] = ("read_data_subset",)

    def __init__(self, *, read_data_subset: str = "", read_data: bool = False,
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(backup_repository_conn_id=backup_repository_conn_id, **kwargs)
        self.read_data_subset = read_data_subset
        self.read_data = read_data

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the check; raise (mapped) IntegrityError if anything is damaged."""
        with engine_errors():
            result = run_check(self.open_repository(), CheckOptions(
                read_data=self.read_data, read_data_subset=self.read_data_subset))
        self.log.info("repository check passed: %s", result)
        return result


class ForgetPruneOperator(RepositoryOperator):
    """Apply a retention policy (restic's ``forget --keep-*``) to the snapshots matching
    ``job``/``tags``/``host`` (grouped by host and paths), then prune unreferenced data
    unless ``prune=False``. Refuses an empty policy (ConfigError). Returns counts."""

    template_fields: Sequence[str] = ("tags", "host", "keep_within")

    def __init__(self, *, job: str | None = None, tags: Sequence[str] = (),
                 host: str | None = None, keep_last: int = 0, keep_hourly: int = 0,
                 keep_daily: int = 0, keep_weekly: int = 0, keep_monthly: int = 0,
                 keep_yearly: int = 0, keep_within: str = "", prune: bool = True,
                 max_unused: str = "5%",
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(backup_repository_conn_id=backup_repository_conn_id, **kwargs)
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.keep = (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly)
        self.keep_within = keep_within
        self.prune = prune
        self.max_unused = max_unused

    def _policy(self) -> ExpirePolicy:
        last, hourly, daily, weekly, monthly, yearly = self.keep
        policy = ExpirePolicy(last=last, hourly=hourly, daily=daily, weekly=weekly,
                              monthly=monthly, yearly=yearly,
                              within=parse_duration(self.keep_within) if self.keep_within
                              else ExpirePolicy().within)
        if policy.is_empty():
            raise ConfigError("no keep_* argument given: refusing to forget every snapshot")
        return policy

    def execute(self, context: Context) -> dict[str, Any]:
        """Forget, then prune; return what was removed and freed."""
        started = time.monotonic()
        with engine_errors():
            policy = self._policy()
            flt = snapshot_filter(job=self.job, tags=self.tags, host=self.host)
            repo = self.open_repository()
            with repo.lock(exclusive=True):
                remove = []
                kept = 0
                for _, snaps in group_snapshots(select_snapshots(repo, flt),
                                                parse_group_by("host,paths")):
                    decided = apply_policy(snaps, policy)
                    remove += decided.remove
                    kept += len(decided.keep)
                for sn in remove:
                    repo.remove_snapshot(sn.id)
                freed = 0
                if self.prune and remove:
                    plan = plan_prune(repo, PruneOptions(max_unused=self.max_unused))
                    if not plan.nothing_to_do:
                        execute_prune(repo, plan)
                    freed = plan.stats.freed_size
        result = {"kept": kept, "removed": [sn.id for sn in remove], "bytes_freed": freed,
                  "duration_s": round(time.monotonic() - started, 3)}
        self.log.info("retention: kept %d, removed %d snapshot(s), freed %d bytes", kept,
                      len(remove), freed)
        return result
