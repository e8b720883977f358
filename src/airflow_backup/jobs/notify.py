"""Alerts through Apprise: one message per outcome, to the job's notification URLs.

A message names the job, the outcome, the failed step and its error, the snapshot ids, sizes,
duration and where the runbook is. Messages are built from step results and error messages,
which never contain secrets; notification URLs (which may hold tokens) are never logged.
A notification that cannot be delivered is logged as a warning and never fails the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config
from airflow_backup.operations.outcome import Status

if TYPE_CHECKING:
    from airflow_backup.jobs.outcome import JobOutcome
    from airflow_backup.operations.backup import BackupOutcome

__all__ = [
    "Notice",
    "deliver",
    "drill_notice",
    "failure_notice",
    "format_notice",
    "job_notice",
    "quiet_apprise",
    "send",
    "store_notice",
]

Detail = str | int | float

log = logging.getLogger("airflow_backup.jobs.notify")

_TYPES = {"failure": "failure", "drill_failure": "failure", "rpo_breach": "failure",
          "degraded": "warning", "partial": "warning",
          "success": "success", "drill_success": "success"}


@dataclass(slots=True)
class Notice:
    """One outcome to report. ``event`` is a NotificationConfig event name."""

    job: str
    event: str
    summary: str
    step: str = ""
    error: str = ""
    snapshots: list[str] = field(default_factory=list)
    repository: str = ""
    details: dict[str, Detail] = field(default_factory=dict)
    duration: float | None = None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_notice(config: Config, notice: Notice) -> tuple[str, str]:
    """Return the (title, body) of a message."""
    title = f"airflow-backup: job {notice.job}: {notice.event.replace('_', ' ').upper()}"
    lines = [notice.summary, "", f"job: {notice.job}", f"outcome: {notice.event}"]
    if notice.step:
        lines.append(f"failed step: {notice.step}")
    if notice.error:
        lines.append(f"error: {notice.error}")
    if notice.repository:
        lines.append(f"repository: {notice.repository}")
    if notice.snapshots:
        lines.append(f"snapshots: {', '.join(s[:8] for s in notice.snapshots)}")
    for key, value in notice.details.items():
        if key.endswith("bytes") and isinstance(value, int | float):
            value = _size(value)
        lines.append(f"{key.replace('_', ' ')}: {value}")
    if notice.duration is not None:
        lines.append(f"duration: {notice.duration:.1f}s")
    runbook = config.runbook or "airflow-backup runbook CONFIG (generate it)"
    lines.append(f"runbook: {runbook}")
    return title, "\n".join(lines)


def send(config: Config, notice: Notice) -> int:
    """Send ``notice`` to the job's URLs if its event is enabled; return how many URLs
    accepted it (0 when disabled or undeliverable)."""
    settings = config.jobs[notice.job].notifications
    if notice.event not in settings.on:
        return 0
    try:
        urls = settings.all_urls()
    except ConfigError as exc:  # an alert must never fail the job: say why it is missing
        log.warning("job %s: notification connection not read: %s", notice.job, exc)
        urls = list(settings.urls)
    if not urls:
        return 0
    title, body = format_notice(config, notice)
    return deliver(urls, title, body, _TYPES.get(notice.event, "info"),
                   label=f"job {notice.job}")


def quiet_apprise() -> None:
    """Keep Apprise's logger and that of the HTTP pool it posts through at INFO or above:
    at DEBUG they log the URLs posted to, webhook tokens included, which a worker running at
    DEBUG would then keep."""
    for name in ("apprise", "urllib3.connectionpool"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def deliver(urls: list[str], title: str, body: str, notify_type: str = "info", *,
            label: str = "notification") -> int:
    """Send one message to each Apprise URL of ``urls``; return how many accepted it. A URL
    that is invalid or refuses is logged by position (URLs hold tokens) and skipped."""
    import apprise

    quiet_apprise()
    delivered = 0
    for i, url in enumerate(urls):
        app = apprise.Apprise()
        if not app.add(url):
            log.warning("%s: notification URL #%d is not a valid Apprise URL", label, i + 1)
            continue
        if app.notify(title=title, body=body, notify_type=notify_type):
            delivered += 1
        else:
            log.warning("%s: notification #%d could not be delivered", label, i + 1)
    return delivered


def failure_notice(job: str, step: str, error: str, attempts: int, duration: float | None,
                   snapshots: tuple[str, ...] = (), repository: str = "") -> Notice:
    """Return the notice of a job that failed in ``step`` with ``error`` (one line) after
    ``attempts`` tries."""
    return Notice(job, "failure", f"backup job {job} FAILED in step {step} after {attempts} "
                  "attempt(s)", step, error, list(snapshots), repository,
                  {"attempts": attempts}, duration)


def store_notice(job: str, store: BackupOutcome, duration: float | None) -> Notice:
    """Return the notice of a job whose snapshots were stored and verified: ``success``,
    ``partial`` (some files unreadable) or ``degraded`` (a fallback took them)."""
    details: dict[str, Detail] = {
        "files": sum(s.files for s in store.snapshots),
        "processed_bytes": store.bytes_processed, "added_bytes": store.bytes_added}
    if store.degraded_reasons:
        details["degraded_because"] = "; ".join(store.degraded_reasons)
    if store.unreadable:
        details["unreadable_items"] = len(store.unreadable)
        details["first_unreadable"] = f"{store.unreadable[0][0]}: {store.unreadable[0][1]}"
    summaries = {
        Status.SUCCESS: f"backup job {job} succeeded",
        Status.PARTIAL: f"backup job {job} stored a PARTIAL snapshot: "
                        f"{len(store.unreadable)} item(s) could not be read",
        Status.DEGRADED: f"backup job {job} stored its snapshot in FALLBACK repository "
                         f"{store.location} (degraded)",
    }
    status = store.status if store.status in summaries else Status.SUCCESS
    return Notice(job, status.value, summaries[status], snapshots=list(store.snapshot_ids),
                  repository=store.location, details=details, duration=duration)


def job_notice(outcome: JobOutcome, store: BackupOutcome | None) -> Notice:
    """Return the one notice of a job run."""
    if outcome.error is not None or store is None:
        error = outcome.error
        return failure_notice(outcome.job, outcome.failed_step,
                              error.describe() if error else "", outcome.attempts,
                              outcome.duration, outcome.snapshots, outcome.location)
    return store_notice(outcome.job, store, outcome.duration)


def drill_notice(job: str, passed: bool, rto: float, max_rto: float, error: str,
                 snapshots: tuple[str, ...], checks: int) -> Notice:
    """Return the notice of a restore drill of ``job``."""
    return Notice(job, "drill_success" if passed else "drill_failure",
                  f"restore drill of job {job} {'passed' if passed else 'FAILED'} "
                  f"(RTO {rto:.1f}s, limit {max_rto:.0f}s)",
                  step="" if passed else "drill", error=error, snapshots=list(snapshots),
                  details={"checks": checks}, duration=rto)
