"""Operators that run one step of a configured backup job (the jobs YAML, docs/jobs.md).

Each is a thin shell over a step function of :mod:`airflow_backup.jobs.runner` — the same
ones ``airflow-backup run`` chains in one process — which call the operations layer: the task
re-reads the config from ``config_path`` (paths and secret *references* only), runs its step,
and returns the step's outcome as JSON, which the next task receives through XCom (pass
``export=`` / ``store=`` an upstream task's ``.output``). Engine errors are mapped once
(:mod:`airflow_backup.provider.errors`): a retryable one (a storage blip, a held lock) is
retried by Airflow per the job's ``retry`` policy, anything else fails the task at once.

The last task of a backup DAG, :class:`JobNotifyOperator`, runs only after ``verify``
succeeded: it emits the job's Asset event (which starts the drill), writes the metrics file,
sends the outcome's notification, and — per the job's ``on_incomplete`` — fails (default) or
warns when the backup was partial or degraded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.export import ExportOutcome, export_step, validate_step
from airflow_backup.jobs.load import load_config_isolated
from airflow_backup.jobs.notify import send, store_notice
from airflow_backup.jobs.repos import repository_spec
from airflow_backup.jobs.runner import (
    JobContext,
    copy_step,
    publish_metrics,
    retention_step,
    run_drill,
    store_step,
    verify_step,
)
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.backup import BackupOutcome, outcome_from_json
from airflow_backup.operations.retention import prune
from airflow_backup.operations.spec import open_repository
from airflow_backup.provider.assets import backup_asset
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.notifications.job import run_links
from airflow_backup.provider.operators.base import OnIncomplete, finish
from airflow_backup.provider.operators.maintenance import check_json, checked
from airflow_backup.repository.check import CheckOptions
from airflow_backup.repository.prune import PruneOptions
from airflow_backup.repository.repo import Repository

__all__ = [
    "JobDrillOperator",
    "JobExportOperator",
    "JobNotifyOperator",
    "JobRestoreOperator",
    "JobRetentionOperator",
    "JobStoreOperator",
    "JobValidateOperator",
    "JobVerifyOperator",
    "JobWatchOperator",
    "RepositoryCheckOperator",
    "RepositoryPruneOperator",
]


def _load(config_path: str) -> Config:
    # Isolated: another job's problem in the file must not stop this one.
    with engine_errors():
        return load_config_isolated(config_path).config


def _result(value: Any, name: str) -> JSONObject:
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
        """Load the config; fail the task (no retry) if the job is invalid or missing (other
        jobs' problems do not matter)."""
        with engine_errors():
            return load_config_isolated(self.config_path).require(self.job)


class _FromExport(JobStepOperator):
    """A step that takes the export step's result (``export=export_task.output``)."""

    template_fields: Sequence[str] = ("config_path", "export")

    def __init__(self, *, export: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export = export

    def export_outcome(self) -> ExportOutcome:
        """Return the export step's outcome."""
        return ExportOutcome.from_json(_result(self.export, "export"))


class _FromStore(JobStepOperator):
    """A step that takes the store step's result (``store=store_task.output``)."""

    template_fields: Sequence[str] = ("config_path", "store")

    def __init__(self, *, store: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store

    def store_outcome(self) -> BackupOutcome:
        """Return the store step's outcome."""
        return outcome_from_json(_result(self.store, "store"))


class JobExportOperator(JobStepOperator):
    """Resolve the job's sources (paths exist, data sources reachable and described)."""

    def execute(self, context: Context) -> JSONObject:
        """Return the export outcome (paths, described sources; no credentials)."""
        config = self.config()
        with engine_errors():
            return export_step(config, self.job).to_json()


class JobValidateOperator(_FromExport):
    """Check the export before anything is stored (readable, SQLite quick_check, …)."""

    def execute(self, context: Context) -> JSONObject:
        """Return the checks that passed; fail naming the first problem."""
        self.config()
        with engine_errors():
            return validate_step(self.export_outcome()).to_json()


class JobStoreOperator(_FromExport):
    """Store the export as snapshots (tag ``job=<job>``) in the job's repository, or a
    fallback (the backup operation)."""

    def execute(self, context: Context) -> JSONObject:
        """Return where the snapshots went and what they hold."""
        config = self.config()
        with engine_errors():
            outcome = store_step(JobContext(config), self.export_outcome())
        self.log.info("job %s: %d snapshot(s) stored in %s (%d bytes added) in %.2fs: %s",
                      self.job, len(outcome.snapshots), outcome.location, outcome.bytes_added,
                      outcome.duration, outcome.status.value)
        for warning in outcome.warnings:
            self.log.warning("job %s: %s", self.job, warning)
        return outcome.to_json()


class JobVerifyOperator(_FromStore):
    """Read the new snapshots back (and check a data subset) where they landed."""

    def execute(self, context: Context) -> JSONObject:
        """Return what was verified; damage fails the task without retry."""
        config = self.config()
        with engine_errors():
            return verify_step(JobContext(config), self.job, self.store_outcome()).to_json()


class JobNotifyOperator(_FromStore):
    """The backup's report, after ``verify``: emit the job's Asset event (the drill starts on
    it), write the metrics file, send the outcome's notification (success, partial or
    degraded; failures are sent by the DAG's failure callback), then apply the job's
    ``on_incomplete`` to a partial or degraded outcome."""

    def __init__(self, **kwargs: Any) -> None:
        self.asset = backup_asset(kwargs["job"])
        outlets = list(kwargs.pop("outlets", None) or [])
        super().__init__(outlets=[*outlets, self.asset], **kwargs)

    def execute(self, context: Context) -> JSONObject:
        """Return the status, the event sent and how many URLs accepted it."""
        config = self.config()
        store = self.store_outcome()
        started = context["dag_run"].start_date if "dag_run" in context else None
        duration = (time.time() - started.timestamp()) if started else None
        context["outlet_events"][self.asset].extra = {
            "job": self.job, "repository": store.repository, "status": store.status.value,
            "degraded": bool(store.degraded_reasons),
            "snapshot_ids": list(store.snapshot_ids), "bytes_added": store.bytes_added,
            "bytes_processed": store.bytes_processed}
        notice = store_notice(self.job, store, duration)
        notice.details.update(run_links(context))
        sent = send(config, notice)
        try:
            publish_metrics(config)
        except (ConfigError, OSError) as exc:
            self.log.warning("metrics not written: %s", exc)
        finish(store, OnIncomplete(config.jobs[self.job].on_incomplete),
               f"backup job {self.job}", self.log)
        return {"status": store.status.value, "event": notice.event, "sent": sent}


class JobRetentionOperator(_FromStore):
    """Apply the job's retention (and prune, if configured) where its snapshot landed."""

    def execute(self, context: Context) -> JSONObject:
        """Return the removed snapshot ids and the bytes freed."""
        from airflow_backup.provider.operators.maintenance import retention_json

        config = self.config()
        with engine_errors():
            outcome = retention_step(JobContext(config), self.job,
                                     self.store_outcome().repository)
        return retention_json(outcome)


class JobCopyOperator(_FromStore):
    """Copy the job's snapshots into its ``copy_to`` repositories (the offsite copy), from
    where its backup landed; each target gets what it lacks (``airflow-backup run``'s copy
    step)."""

    def execute(self, context: Context) -> JSONObject:
        """Return per target the new snapshot ids and the blobs and bytes transferred."""
        config = self.config()
        with engine_errors():
            outcome = copy_step(JobContext(config), self.job, self.store_outcome().repository)
        return outcome.to_json()


def _backup_run(context: Context, job: str) -> dict[str, str]:
    """The backup run whose Asset event started this drill (``{}`` for a scheduled one)."""
    uri = backup_asset(job).uri
    events: Any = context.get("triggering_asset_events") or {}
    for key, found in dict(events).items():
        if uri in (getattr(key, "uri", key), str(key)):
            for event in found or []:
                run_id = getattr(event, "source_run_id", None)
                if run_id:
                    return {"backup_run": f"{getattr(event, 'source_dag_id', '')}/{run_id}"}
    return {}


class JobDrillOperator(JobStepOperator):
    """Restore the job's latest snapshots, where its last backup landed, into a sandbox,
    validate them, measure the RTO and record the drill in the repository (``airflow-backup
    drill``). A failed drill fails the task without retry: it is a finding, and the job's
    drill_failure alert has gone out."""

    template_fields: Sequence[str] = ("config_path", "as_of")

    def __init__(self, *, as_of: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_of = as_of

    def execute(self, context: Context) -> JSONObject:
        """Return the drill outcome (RTO, checks, snapshots, record id)."""
        config = self.config()
        with engine_errors():
            outcome, sent = run_drill(config, self.job, as_of=self.as_of,
                                      links={**run_links(context),
                                             **_backup_run(context, self.job)})
        try:
            publish_metrics(config)
        except (ConfigError, OSError) as exc:
            self.log.warning("metrics not written: %s", exc)
        out = outcome.to_json()
        error = outcome.error
        out.update(ok=outcome.ok, error=error.describe() if error else "", notified=sent,
                   rto_exceeded=outcome.rto_exceeded)
        if not outcome.ok:
            raise AirflowFailException(f"restore drill of job {self.job} failed: "
                                       f"{out['error']}")
        self.log.info("drill of job %s passed in %s: RTO %.2fs, %d check(s)", self.job,
                      outcome.repository, outcome.rto, len(outcome.checks))
        return out


class JobRestoreOperator(JobStepOperator):
    """Restore one source of a configured job (:func:`airflow_backup.jobs.repos.
    job_restore_request`) from the job's repository into ``target``: ``snapshot`` (``latest``
    or an id prefix) or ``as_of`` a time, ``source`` one of the job's sources (default: its
    files, else its first data source), ``on_existing`` fail/skip/overwrite/replace. All
    templated: the ``restore__<job>`` DAG passes its params. Counts and checksums are
    compared; anything not restored fails the task (no retry)."""

    template_fields: Sequence[str] = ("config_path", "target", "snapshot", "as_of", "source",
                                      "on_existing")

    def __init__(self, *, target: str, snapshot: str = "latest", as_of: str = "",
                 source: str = "", on_existing: str = "fail", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.snapshot = snapshot
        self.as_of = as_of
        self.source = source
        self.on_existing = on_existing

    def execute(self, context: Context) -> JSONObject:
        """Restore; return the restore outcome (snapshot id, counts, duration, target)."""
        from airflow_backup.jobs.repos import job_restore_request
        from airflow_backup.operations.outcome import parse_choice
        from airflow_backup.operations.restore import OnExisting, restore

        config = self.config()
        with engine_errors():
            request = job_restore_request(
                config, self.job, target=self.target, source=self.source,
                snapshot=self.snapshot, as_of=self.as_of,
                on_existing=parse_choice(OnExisting, self.on_existing, "on_existing"))
            spec = repository_spec(config, config.jobs[self.job].repository)
            outcome = restore(open_repository(spec), request, lock_wait=spec.lock_wait)
        self.log.info("job %s: restored snapshot %s into %s", self.job, outcome.short_id,
                      outcome.target)
        if outcome.errors:
            raise AirflowFailException(f"restore of {outcome.short_id}: {len(outcome.errors)} "
                                       f"item(s) not restored; first: {outcome.errors[0][0]}")
        return outcome.to_json()


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
        config = _load(self.config_path)
        if self.repository not in config.repositories:
            raise ConfigError(f"no repository {self.repository!r} in {self.config_path}")
        spec = repository_spec(config, self.repository, with_fallbacks=False)
        return open_repository(spec), spec.lock_wait


class RepositoryCheckOperator(ConfigRepositoryOperator):
    """Check the repository's structure and re-read ``read_data_subset`` of its packs."""

    template_fields: Sequence[str] = ("config_path", "read_data_subset")

    def __init__(self, *, read_data_subset: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read_data_subset = read_data_subset

    def execute(self, context: Context) -> JSONObject:
        """Return counts; damage fails the task without retry (IntegrityError)."""
        with engine_errors():
            repo, lock_wait = self.open()
            outcome = checked(repo, CheckOptions(read_data_subset=self.read_data_subset),
                              lock_wait)
        return {"repository": self.repository, **check_json(outcome)}


class RepositoryPruneOperator(ConfigRepositoryOperator):
    """Remove data no snapshot references (restic's ``prune``), leaving at most
    ``max_unused`` unused space in partly used packs."""

    def __init__(self, *, max_unused: str = "5%", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_unused = max_unused

    def execute(self, context: Context) -> JSONObject:
        """Return the bytes freed and whether there was anything to do."""
        with engine_errors():
            repo, lock_wait = self.open()
            with repo.lock(exclusive=True, retry_seconds=lock_wait):
                outcome = prune(repo, PruneOptions(max_unused=self.max_unused))
        return {"repository": self.repository, "bytes_freed": outcome.freed_bytes,
                "nothing_to_do": outcome.plan.nothing_to_do}


class JobWatchOperator(BaseOperator):
    """The status watch of a jobs config (:func:`airflow_backup.jobs.watch.watch`): every
    job's RPO and drill age, and the jobs left out because they are invalid; each breach is
    alerted once. The breaches in force are kept between runs in the Airflow Variable
    ``state_variable`` (JSON: breach key → fingerprint; no secrets). Writes the metrics file.
    Fails (no retry) while any breach is in force, so the DAG's runs show it."""

    template_fields: Sequence[str] = ("config_path",)

    def __init__(self, *, config_path: str, state_variable: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_path = config_path
        self.state_variable = state_variable

    def execute(self, context: Context) -> JSONObject:
        """Return the breaches in force, those alerted now and every job's status."""
        from airflow.sdk import Variable

        from airflow_backup.jobs.watch import state_from_json, watch

        with engine_errors():
            loaded = load_config_isolated(self.config_path)
        previous = state_from_json(Variable.get(self.state_variable, default=None,
                                                deserialize_json=True))
        outcome = watch(loaded, previous)
        if outcome.state != previous:
            Variable.set(self.state_variable, outcome.state, serialize_json=True,
                         description="airflow-backup status watch: breaches already alerted")
        for key in outcome.alerted:
            self.log.warning("new breach alerted: %s", key)
        body = outcome.to_json()
        if outcome.state:
            raise AirflowFailException(
                f"{len(outcome.state)} breach(es) in force: {', '.join(sorted(outcome.state))}"
                f" ({len(outcome.alerted)} alerted now)")
        return body
