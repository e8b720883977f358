"""Run a backup job: export → validate → store → verify → retention → notify.

The job runner of ``airflow-backup run``; the generated Airflow DAGs run the same step
functions as separate tasks. Each step calls the operations layer and is retried on its own
per the job's ``retry`` policy when its error says a retry may help
(:mod:`airflow_backup.operations.retry`): a step that succeeded is never repeated, so a retry
never stores a second snapshot. The job's outcome is the store's (success, partial, degraded)
or ``failed`` with the failing step's error; its exit code comes from the error tree. Whatever
happens, exactly one notification goes out per run (if its event is enabled). The runner never
prints: progress goes to a :class:`JobEvents` subscriber.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from airflow_backup.errors import ConfigError, first_line
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.events import JobEvents
from airflow_backup.jobs.export import ExportOutcome, export_step, validate_step
from airflow_backup.jobs.notify import drill_notice, job_notice, send
from airflow_backup.jobs.outcome import JobOutcome, StepRecord
from airflow_backup.jobs.repos import (
    drill_options,
    job_watches,
    pitr_source,
    repository_spec,
    retention_request,
    step_retry,
    verify_options,
)
from airflow_backup.operations.backup import BackupOutcome, BackupRequest, backup
from airflow_backup.operations.copy import CopyOutcome, copy_job_snapshots
from airflow_backup.operations.drill import DrillOutcome, drill
from airflow_backup.operations.outcome import Failure, Outcome, Status
from airflow_backup.operations.retention import RetentionOutcome, retention
from airflow_backup.operations.retry import run_step
from airflow_backup.operations.spec import CacheSpec, RepositorySpec, open_repository
from airflow_backup.operations.status import statuses, write_metrics
from airflow_backup.operations.tags import job_tag
from airflow_backup.operations.verify import VerifyOutcome, verify_snapshots
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter

__all__ = [
    "STEPS",
    "JobContext",
    "JobEvents",
    "JobOutcome",
    "StepRecord",
    "copy_step",
    "publish_metrics",
    "retention_step",
    "run_drill",
    "run_job",
    "store_step",
    "verify_step",
]

STEPS = ("export", "validate", "store", "verify", "retention", "copy", "notify")

OutcomeT = TypeVar("OutcomeT", bound=Outcome)


@dataclass(slots=True)
class JobContext:
    """One run's view of the config: the cache settings of the front end (``--no-cache``,
    ``--cache-dir``) and the repositories opened so far, so that consecutive steps in one
    process open each repository (and derive its key) once."""

    config: Config
    cache: CacheSpec = field(default_factory=CacheSpec)
    repos: dict[str, Repository] = field(default_factory=dict)

    def spec(self, name: str) -> RepositorySpec:
        """Return the spec of repository ``name`` with its fallbacks."""
        return repository_spec(self.config, name, self.cache)

    def repository(self, name: str) -> Repository:
        """Return repository ``name``, opening it on first use."""
        if name not in self.repos:
            job_primary = any(j.repository == name for j in self.config.jobs.values())
            self.repos[name] = open_repository(repository_spec(
                self.config, name, self.cache, with_fallbacks=False, primary=job_primary))
        return self.repos[name]


def store_step(ctx: JobContext, export: ExportOutcome,
               events: JobEvents | None = None) -> BackupOutcome:
    """Store the export as snapshots tagged ``job=<name>`` in the job's repository or a
    fallback (the backup operation)."""
    job = ctx.config.jobs[export.job]
    urls = tuple(job.sources[s.position] for s in export.sources)
    request = BackupRequest(paths=export.paths, sources=urls, excludes=tuple(job.excludes),
                            iexcludes=tuple(job.iexcludes), exclude_caches=job.exclude_caches,
                            exclude_if_present=tuple(job.exclude_if_present),
                            exclude_larger_than=job.exclude_larger_than,
                            one_file_system=job.one_file_system,
                            tags=(job_tag(export.job), *job.tags), job=export.job)
    # Verify and retention use the repository the backup opened: its key is derived once.
    def keep(target: RepositorySpec, repo: Repository) -> None:
        ctx.repos.setdefault(target.name, repo)

    return backup(ctx.spec(job.repository), request, events=events, on_open=keep)


def verify_step(ctx: JobContext, job: str, store: BackupOutcome) -> VerifyOutcome:
    """Read the new snapshots of ``job`` back where they landed, per its verification."""
    lock_wait = ctx.config.repositories[store.repository].lock_wait
    return verify_snapshots(ctx.repository(store.repository), store.snapshot_ids,
                            verify_options(ctx.config.jobs[job]), lock_wait=lock_wait)


def retention_step(ctx: JobContext, job: str, repository: str) -> RetentionOutcome:
    """Apply the job's retention in ``repository`` (where its snapshot just landed)."""
    spec = ctx.config.jobs[job]
    if spec.retention.is_empty():
        return RetentionOutcome()
    if pitr_source(spec):
        return _pitr_retention(ctx, job, repository)
    return retention(ctx.repository(repository), retention_request(job, spec),
                     lock_wait=ctx.config.repositories[repository].lock_wait)


def _pitr_retention(ctx: JobContext, job: str, repository: str) -> RetentionOutcome:
    """The retention of a ``postgresql+pitr://`` job: WAL-aware (``pg forget``'s operation):
    keep the newest ``keep_last`` base backups and/or those within ``keep_within``, and the
    WAL they need; forget the rest, then prune if configured."""
    from pathlib import Path

    from airflow_backup.operations.pitr_retention import forget_pitr
    from airflow_backup.pitr.catalog import PitrCatalog
    from airflow_backup.pitr.retention import PitrRetentionPolicy
    from airflow_backup.repository.forget import Duration, parse_duration
    from airflow_backup.storage.cache import resolve_cache_root

    r = ctx.config.jobs[job].retention
    policy = PitrRetentionPolicy(keep_base=r.keep_last, keep_within=parse_duration(
        r.keep_within) if r.keep_within else Duration())
    repo = ctx.repository(repository)
    root = None if ctx.cache.enabled is False else Path(
        resolve_cache_root(ctx.cache.root or None))
    done = forget_pitr(repo, PitrCatalog(repo, root), policy, prune=r.prune,
                       lock_wait=ctx.config.repositories[repository].lock_wait)
    return done.outcome or RetentionOutcome(kept=len(done.plan.keep_bases))


def copy_step(ctx: JobContext, job: str, repository: str) -> CopyOutcome:
    """Copy the job's snapshots from ``repository`` (where its backup landed) into each of
    its ``copy_to`` repositories that lacks them (none configured: nothing to do)."""
    spec = ctx.config.jobs[job]
    targets = [(name, ctx.repository(name)) for name in spec.copy_to if name != repository]
    if not targets:
        return CopyOutcome()
    return copy_job_snapshots(ctx.repository(repository), targets,
                              SnapshotFilter(tags=[job_tag(job)]),
                              lock_wait=ctx.config.repositories[repository].lock_wait)


def run_job(config: Config, job: str, *, events: JobEvents | None = None,
            cache: CacheSpec | None = None,
            sleep: Callable[[float], None] = time.sleep) -> JobOutcome:
    """Run ``job`` of ``config`` to the end and notify; return its outcome (never raises for
    a failed job: the outcome says ``failed``). Raise ConfigError for an unknown job name."""
    if job not in config.jobs:
        raise ConfigError(f"no job {job!r} in the config (jobs: {', '.join(config.jobs)})")
    events = events or JobEvents()
    ctx = JobContext(config, cache or CacheSpec())
    policy = step_retry(config.jobs[job])
    started = time.monotonic()
    records: list[StepRecord] = []
    store: BackupOutcome | None = None
    failure: Failure | None = None

    def step(name: str, fn: Callable[[], OutcomeT]) -> OutcomeT:
        events.step_started(job, name, 1)
        t0 = time.monotonic()
        tries = [0]

        def counted() -> OutcomeT:
            tries[0] += 1
            return fn()

        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            events.attempt_failed(job, name, first_line(exc), delay)
            events.step_started(job, name, attempt + 1)

        try:
            value, attempts = run_step(counted, policy, on_retry=on_retry, sleep=sleep)
        except Exception as exc:
            records.append(StepRecord(name, tries[0], time.monotonic() - t0))
            events.attempt_failed(job, name, first_line(exc), None)
            raise _StepFailed(name, exc) from exc
        result = value.to_json()
        records.append(StepRecord(name, attempts, time.monotonic() - t0, result))
        events.step_finished(job, name, result)
        return value

    try:
        export = step("export", lambda: export_step(config, job))
        step("validate", lambda: validate_step(export))
        store = step("store", lambda: store_step(ctx, export, events))
        landed = store
        step("verify", lambda: verify_step(ctx, job, landed))
        step("retention", lambda: retention_step(ctx, job, landed.repository))
        if config.jobs[job].copy_to:
            step("copy", lambda: copy_step(ctx, job, landed.repository))
    except _StepFailed as exc:
        failure = Failure.of(exc.exc, exc.step)
    outcome = JobOutcome(
        job=job, status=Status.FAILED if failure else (store.status if store else Status.FAILED),
        duration=time.monotonic() - started, error=failure,
        warnings=store.warnings if store else (),
        attempts=max((r.attempts for r in records), default=0),
        failed_step=failure.step if failure else "",
        repository=store.repository if store else "", location=store.location if store else "",
        snapshots=store.snapshot_ids if store else (),
        bytes_added=store.bytes_added if store else 0, steps=tuple(records))
    events.step_started(job, "notify", 1)
    notice = job_notice(outcome, store)
    sent = send(config, notice)
    events.step_finished(job, "notify", {"sent": sent, "event": notice.event})
    return replace(outcome, notified=sent)


class _StepFailed(Exception):
    def __init__(self, step: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.step = step
        self.exc = exc


def publish_metrics(config: Config, path: str = "", cache: CacheSpec | None = None) -> str:
    """Write the metrics of every job of ``config`` to ``path`` (default: the config's
    ``metrics_file``); return the path written ('' when none is configured)."""
    path = path or config.metrics_file or ""
    if path:
        write_metrics(path, statuses(job_watches(config, cache=cache)))
    return path


def run_drill(config: Config, job: str, *, as_of: str = "", cache: CacheSpec | None = None,
              links: dict[str, str] | None = None) -> tuple[DrillOutcome, int]:
    """Drill ``job`` where its newest backup landed, record it, notify (the message carries
    ``links``: the run and its log, in Airflow); return the outcome and how many
    notification URLs accepted it. Raise ConfigError for an unknown job."""
    if job not in config.jobs:
        raise ConfigError(f"no job {job!r} in the config")
    spec = config.jobs[job]
    outcome = drill(repository_spec(config, spec.repository, cache or CacheSpec()), job,
                    drill_options(spec), as_of=as_of, links=links)
    error = outcome.error
    notice = drill_notice(job, outcome.ok, outcome.rto, outcome.max_rto,
                          error.describe() if error else "", outcome.snapshots,
                          len(outcome.checks))
    notice.details.update(links or {})
    sent = send(config, notice)
    return outcome, sent
