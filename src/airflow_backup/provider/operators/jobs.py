"""Operators that run one step of a configured backup job (the jobs YAML, docs/jobs.md).

Each is a thin shell over a step function of :mod:`airflow_backup.jobs.steps`, the same ones
``airflow-backup run`` chains in one process: the task re-reads the config from
``config_path`` (paths and secret *references* only), runs its step, and returns the step's
small JSON result, which the next task receives through XCom (pass ``export=`` /
``store=`` an upstream task's ``.output``). Engine errors are mapped once
(:mod:`airflow_backup.provider.errors`): what retrying cannot fix fails the task at once.
The DAG factory (:mod:`airflow_backup.provider.dags`) wires them into DAGs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.drill import drill_job
from airflow_backup.jobs.load import load_config
from airflow_backup.jobs.notify import send
from airflow_backup.jobs.pipeline import success_notice
from airflow_backup.jobs.repos import open_named
from airflow_backup.jobs.steps import (
    ExportResult,
    StoreResult,
    export_step,
    retention_step,
    store_step,
    validate_step,
    verify_step,
)
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.operators.backup import backup_asset
from airflow_backup.provider.operators.maintenance import run_check
from airflow_backup.repository.check import CheckOptions
from airflow_backup.repository.prune import PruneOptions, execute_prune, plan_prune
from airflow_backup.repository.repo import Repository

__all__ = [
    "JobDrillOperator",
    "JobExportOperator",
    "JobNotifyOperator",
    "JobRetentionOperator",
    "JobStoreOperator",
    "JobValidateOperator",
    "JobVerifyOperator",
    "RepositoryCheckOperator",
    "RepositoryPruneOperator",
]


def _load(config_path: str) -> Config:
    with engine_errors():
        return load_config(config_path)


def _result(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AirflowFailException(f"{name}: expected the upstream step's JSON result (a dict), "
                                   f"got {type(value).__name__}")
    return value


class JobStepOperator(BaseOperator):
    """Base of the job-step operators: the config file and the job name."""

    template_fields: Sequence[str] = ("config_path",)

    def __init__(self, *, config_path: str, job: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_path = config_path
        self.job = job

    def config(self) -> Config:
        """Load the config; fail the task (no retry) if it is invalid or lacks the job."""
        config = _load(self.config_path)
        if self.job not in config.jobs:
            raise AirflowFailException(f"no job {self.job!r} in {self.config_path}")
        return config


class _FromExport(JobStepOperator):
    """A step that takes the export step's result (``export=export_task.output``)."""

    template_fields: Sequence[str] = ("config_path", "export")

    def __init__(self, *, export: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export = export

    def export_result(self) -> ExportResult:
        """Return the export step's result."""
        return ExportResult(**_result(self.export, "export"))


class _FromStore(JobStepOperator):
    """A step that takes the store step's result (``store=store_task.output``)."""

    template_fields: Sequence[str] = ("config_path", "store")

    def __init__(self, *, store: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store

    def store_json(self) -> dict[str, Any]:
        """Return the store step's JSON result."""
        return _result(self.store, "store")


class JobExportOperator(JobStepOperator):
    """Resolve the job's sources (paths exist, data sources reachable and described)."""

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the export result (paths, described sources; no credentials)."""
        config = self.config()
        with engine_errors():
            return export_step(config, self.job).to_json()


class JobValidateOperator(_FromExport):
    """Check the export before anything is stored (readable, SQLite quick_check, …)."""

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the checks that passed; fail naming the first problem."""
        config = self.config()
        with engine_errors():
            return validate_step(config, self.export_result()).to_json()


class JobStoreOperator(_FromExport):
    """Store the export as snapshots (tag ``job=<job>``) in the job's repository, or a
    fallback; emit an event on the job's Asset with the snapshot ids and sizes."""

    def __init__(self, *, repository: str, **kwargs: Any) -> None:
        self.asset = backup_asset(kwargs["job"], repository)
        outlets = list(kwargs.pop("outlets", None) or [])
        super().__init__(outlets=[*outlets, self.asset], **kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        """Return where the snapshots went and what they hold."""
        config = self.config()
        started = time.monotonic()
        with engine_errors():
            result = store_step(config, self.export_result())
        out = result.to_json()
        snaps = out["snapshots"]
        context["outlet_events"][self.asset].extra = {
            "job": self.job, "repository": result.repository, "degraded": result.degraded,
            "snapshot_ids": [s["id"] for s in snaps], "bytes_added": result.bytes_added,
            "bytes_processed": sum(int(s.get("bytes", 0)) for s in snaps)}
        self.log.info("job %s: %d snapshot(s) stored in %s (%d bytes added) in %.2fs",
                      self.job, len(snaps), result.location, result.bytes_added,
                      time.monotonic() - started)
        return out


class JobVerifyOperator(_FromStore):
    """Read the new snapshots back (and check a data subset) per the job's verification."""

    def execute(self, context: Context) -> dict[str, Any]:
        """Return what was verified; damage fails the task without retry."""
        config = self.config()
        with engine_errors():
            return verify_step(config, StoreResult(**self.store_json())).to_json()


class JobNotifyOperator(_FromStore):
    """Send the job's success (or degraded) notification; failures are sent by the DAG's
    failure callback (:class:`~airflow_backup.provider.notifications.job.JobNotifier`)."""

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the event sent and how many URLs accepted it."""
        config = self.config()
        started = context["dag_run"].start_date if "dag_run" in context else None
        duration = (time.time() - started.timestamp()) if started else None
        notice = success_notice(self.job, self.store_json(), duration)
        return {"event": notice.event, "sent": send(config, notice)}


class JobRetentionOperator(_FromStore):
    """Apply the job's retention (and prune, if configured) where its snapshot landed."""

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the removed snapshot ids and the bytes freed."""
        config = self.config()
        repository = str(self.store_json()["repository"])
        with engine_errors():
            return retention_step(config, self.job, repository).to_json()


class JobDrillOperator(JobStepOperator):
    """Restore the job's latest snapshots into a sandbox, validate them, measure the RTO and
    record the drill in the repository (``airflow-backup drill``). A failed drill fails the
    task without retry: it is a finding, and the job's drill_failure alert has gone out."""

    template_fields: Sequence[str] = ("config_path", "as_of")

    def __init__(self, *, as_of: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_of = as_of

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the drill result (RTO, checks, snapshots, record id)."""
        config = self.config()
        with engine_errors():
            result = drill_job(config, self.job, as_of=self.as_of)
        out = result.to_json()
        if not result.ok:
            raise AirflowFailException(f"restore drill of job {self.job} failed: {result.error}")
        self.log.info("drill of job %s passed: RTO %.2fs, %d check(s)", self.job, result.rto,
                      len(result.checks))
        return out


class ConfigRepositoryOperator(BaseOperator):
    """Base of the maintenance operators: a repository by name in the jobs config."""

    template_fields: Sequence[str] = ("config_path",)

    def __init__(self, *, config_path: str, repository: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_path = config_path
        self.repository = repository

    def open(self) -> tuple[Repository, float]:
        """Open the repository named in the config; return it and its ``lock_wait`` (engine
        errors propagate)."""
        config = load_config(self.config_path)
        if self.repository not in config.repositories:
            raise ConfigError(f"no repository {self.repository!r} in {self.config_path}")
        return (open_named(config, self.repository),
                config.repositories[self.repository].lock_wait)


class RepositoryCheckOperator(ConfigRepositoryOperator):
    """Check the repository's structure and re-read ``read_data_subset`` of its packs."""

    template_fields: Sequence[str] = ("config_path", "read_data_subset")

    def __init__(self, *, read_data_subset: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read_data_subset = read_data_subset

    def execute(self, context: Context) -> dict[str, Any]:
        """Return counts; damage fails the task without retry (IntegrityError)."""
        with engine_errors():
            repo, lock_wait = self.open()
            result = run_check(repo, CheckOptions(read_data_subset=self.read_data_subset),
                               lock_wait)
        return {"repository": self.repository, **result}


class RepositoryPruneOperator(ConfigRepositoryOperator):
    """Remove data no snapshot references (restic's ``prune``), leaving at most
    ``max_unused`` unused space in partly used packs."""

    def __init__(self, *, max_unused: str = "5%", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_unused = max_unused

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the packs removed and rewritten and the bytes freed."""
        with engine_errors():
            repo, lock_wait = self.open()
            with repo.lock(exclusive=True, retry_seconds=lock_wait):
                plan = plan_prune(repo, PruneOptions(max_unused=self.max_unused))
                if not plan.nothing_to_do:
                    execute_prune(repo, plan)
        return {"repository": self.repository, "bytes_freed": plan.stats.freed_size,
                "nothing_to_do": plan.nothing_to_do}
