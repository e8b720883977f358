"""VerifyBackupOperator (the check operation) and ForgetPruneOperator (the retention
operation: forget, then prune)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_backup.errors import ConfigError, IntegrityError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.retention import RetentionOutcome, RetentionRequest, retention
from airflow_backup.operations.verify import CheckOutcome, check
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.operators.base import RepositoryOperator, snapshot_filter
from airflow_backup.repository.check import CheckOptions
from airflow_backup.repository.forget import ExpirePolicy, parse_duration
from airflow_backup.repository.prune import PruneOptions
from airflow_backup.repository.repo import Repository

__all__ = ["ForgetPruneOperator", "VerifyBackupOperator", "check_json", "checked",
           "retention_json"]


def checked(repo: Repository, options: CheckOptions, lock_wait: float = 0.0) -> CheckOutcome:
    """Check ``repo``; raise IntegrityError (no retry) naming the first problem if damaged."""
    outcome = check(repo, options, lock_wait=lock_wait)
    if not outcome.ok:
        raise IntegrityError(f"check found {len(outcome.report.errors)} error(s); first: "
                             f"{outcome.report.errors[0]}")
    return outcome


def check_json(outcome: CheckOutcome) -> JSONObject:
    """Return the XCom of a passed check: counts and duration."""
    r = outcome.report
    return {"ok": True, "snapshots": r.snapshots, "packs": r.packs, "packs_read": r.packs_read,
            "duration_s": round(outcome.duration, 3)}


def retention_json(outcome: RetentionOutcome) -> JSONObject:
    """Return the XCom of a retention: kept, removed, bytes freed."""
    return {"status": outcome.status.value, "kept": outcome.kept,
            "removed": list(outcome.removed), "bytes_freed": outcome.freed_bytes,
            "pruned": outcome.pruned is not None, "duration_s": round(outcome.duration, 3)}


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

    def execute(self, context: Context) -> JSONObject:
        """Run the check; raise (mapped) IntegrityError if anything is damaged."""
        with engine_errors():
            spec = self.spec()
            outcome = checked(self.open_repository(), CheckOptions(
                read_data=self.read_data, read_data_subset=self.read_data_subset),
                spec.lock_wait)
        result = check_json(outcome)
        self.log.info("repository check passed: %s", result)
        return result


class ForgetPruneOperator(RepositoryOperator):
    """Apply a retention policy (restic's ``forget --keep-*``) to the backups (never drill
    records) matching ``job``/``tags``/``host``, grouped by host and paths, then prune
    unreferenced data unless ``prune=False``. Refuses an empty policy, and a policy that
    would remove the last snapshot of a group (ConfigError), like ``forget`` and job
    retention. Returns counts."""

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

    def execute(self, context: Context) -> JSONObject:
        """Forget, then prune; return what was removed and freed."""
        with engine_errors():
            request = RetentionRequest(
                policy=self._policy(),
                filter=snapshot_filter(job=self.job, tags=self.tags, host=self.host),
                prune=self.prune, prune_options=PruneOptions(max_unused=self.max_unused))
            spec = self.spec()
            outcome = retention(self.open_repository(), request, lock_wait=spec.lock_wait)
        result = retention_json(outcome)
        self.log.info("retention: kept %d, removed %d snapshot(s), freed %d bytes",
                      outcome.kept, len(outcome.removed), outcome.freed_bytes)
        return result
