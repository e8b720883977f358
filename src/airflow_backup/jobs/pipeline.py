"""Run a backup job: export → validate → store → verify → retention → notify.

:func:`run_job` runs the steps of :mod:`airflow_backup.jobs.steps` in order. A failing step
stops the attempt; the whole attempt is retried with exponential backoff and jitter per the
job's retry policy (tenacity), unless the error is one retrying cannot fix (bad config, wrong
password, damaged data). The store step moves to a fallback repository where configured.
Whatever happens, exactly one notification is sent per outcome (success, degraded or
failure — if that event is enabled), after the last attempt. The engine never prints:
progress goes to a :class:`JobEvents` subscriber.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from airflow_backup.errors import (
    BackupError,
    ConfigError,
    IntegrityError,
    Interrupted,
    WrongPassword,
    first_line,
)
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.events import JobEvents
from airflow_backup.jobs.notify import Notice, send
from airflow_backup.jobs.steps import (
    JobSession,
    export_step,
    retention_step,
    store_step,
    validate_step,
    verify_step,
)

__all__ = ["STEPS", "JobEvents", "JobResult", "failure_notice", "run_job", "success_notice"]

log = logging.getLogger("airflow_backup.jobs.pipeline")

STEPS = ("export", "validate", "store", "verify", "retention", "notify")


@dataclass(slots=True)
class JobResult:
    """The outcome of one job run. ``status``: success, degraded or failed."""

    job: str
    status: str
    attempts: int
    duration: float
    failed_step: str = ""
    error: str = ""
    error_type: str = ""
    exit_code: int = 0
    repository: str = ""
    snapshots: list[str] = field(default_factory=list)
    bytes_added: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    notified: int = 0

    @property
    def ok(self) -> bool:
        """Return whether a snapshot was stored and verified (degraded included)."""
        return self.status != "failed"

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-able dict."""
        return asdict(self)


class _StepFailed(Exception):
    def __init__(self, step: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.step = step
        self.exc = exc


def _retryable(exc: BaseException) -> bool:
    inner = exc.exc if isinstance(exc, _StepFailed) else exc
    return not isinstance(inner, ConfigError | WrongPassword | IntegrityError | Interrupted
                          | KeyboardInterrupt)


def _attempt(config: Config, job: str, attempt: int, events: JobEvents,
             steps: dict[str, dict[str, Any]]) -> None:
    session = JobSession(config)
    current = "export"

    def begin(step: str) -> None:
        nonlocal current
        current = step
        events.step_started(job, step, attempt)

    def done(step: str, result: dict[str, Any]) -> None:
        steps[step] = result
        events.step_finished(job, step, result)

    try:
        begin("export")
        export = export_step(config, job)
        done("export", export.to_json())
        begin("validate")
        done("validate", validate_step(config, export).to_json())
        begin("store")
        store = store_step(config, export, session, events)
        done("store", store.to_json())
        begin("verify")
        done("verify", verify_step(config, store, session).to_json())
        begin("retention")
        done("retention", retention_step(config, job, store.repository, session).to_json())
    except (BackupError, OSError, ValueError, KeyError) as exc:
        raise _StepFailed(current, exc) from exc


def failure_notice(job: str, step: str, error: str, attempts: int, duration: float | None,
                   store: dict[str, Any] | None = None) -> Notice:
    """Return the notice of a job that failed in ``step`` with ``error`` (one line) after
    ``attempts`` tries; ``store`` is the store step's JSON result if it got that far."""
    store = store or {}
    return Notice(job, "failure", f"backup job {job} FAILED in step {step} after {attempts} "
                  "attempt(s)", step, error,
                  [str(s["id"]) for s in store.get("snapshots", [])],
                  str(store.get("location", "")), {"attempts": attempts}, duration)


def success_notice(job: str, store: dict[str, Any], duration: float | None) -> Notice:
    """Return the notice of a job whose snapshots were stored and verified, given the store
    step's JSON result (a ``degraded`` notice if they went to a fallback repository)."""
    snaps = store.get("snapshots", [])
    degraded = bool(store.get("degraded"))
    details: dict[str, Any] = {
        "files": sum(int(s.get("files", 0)) for s in snaps),
        "processed_bytes": sum(int(s.get("bytes", 0)) for s in snaps),
        "added_bytes": sum(int(s.get("stored", 0)) for s in snaps)}
    if degraded:
        details["degraded_because"] = "; ".join(store.get("reasons", []))
    summary = (f"backup job {job} stored its snapshot in FALLBACK repository "
               f"{store.get('location')} (degraded)" if degraded
               else f"backup job {job} succeeded")
    return Notice(job, "degraded" if degraded else "success", summary,
                  snapshots=[str(s["id"]) for s in snaps],
                  repository=str(store.get("location", "")), details=details, duration=duration)


def run_job(config: Config, job: str, *, events: JobEvents | None = None,
            sleep: Callable[[float], None] = time.sleep) -> JobResult:
    """Run ``job`` of ``config`` to the end and notify; return its result (never raises for
    a failed job: the result says ``failed``). Raise ConfigError for an unknown job name."""
    if job not in config.jobs:
        raise ConfigError(f"no job {job!r} in the config (jobs: {', '.join(config.jobs)})")
    events = events or JobEvents()
    spec = config.jobs[job]
    policy = spec.retry
    started = time.monotonic()
    steps: dict[str, dict[str, Any]] = {}
    attempts = 0

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        delay = state.next_action.sleep if state.next_action else 0.0
        if isinstance(exc, _StepFailed):
            log.warning("job %s: attempt %d failed in %s (%s); retrying in %.1fs", job,
                        state.attempt_number, exc.step, first_line(exc.exc), delay)
            events.attempt_failed(job, exc.step, first_line(exc.exc), delay)

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_delay, exp_base=policy.multiplier,
                              max=policy.max_delay) + wait_random(0, policy.jitter),
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    failure: _StepFailed | None = None
    try:
        for attempt in retrying:
            with attempt:
                attempts += 1
                steps.clear()
                _attempt(config, job, attempts, events, steps)
    except _StepFailed as exc:
        failure = exc
    duration = time.monotonic() - started
    store = steps.get("store", {})
    snapshots = [str(s["id"]) for s in store.get("snapshots", [])]
    added = sum(int(s.get("stored", 0)) for s in store.get("snapshots", []))
    if failure is not None:
        events.attempt_failed(job, failure.step, first_line(failure.exc), None)
        result = JobResult(job, "failed", attempts, duration, failure.step,
                           first_line(failure.exc), type(failure.exc).__name__,
                           failure.exc.exit_code if isinstance(failure.exc, BackupError) else 1,
                           str(store.get("repository", "")), snapshots, added, dict(steps))
        notice = failure_notice(job, failure.step, result.error, attempts, duration, store)
    else:
        degraded = bool(store.get("degraded"))
        result = JobResult(job, "degraded" if degraded else "success", attempts, duration,
                           repository=str(store.get("repository", "")), snapshots=snapshots,
                           bytes_added=added, steps=dict(steps))
        notice = success_notice(job, store, duration)
    events.step_started(job, "notify", attempts)
    result.notified = send(config, notice)
    events.step_finished(job, "notify", {"sent": result.notified, "event": notice.event})
    return result
