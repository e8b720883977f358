"""The status watch: every job's RPO and drill age, and the config's own problems, with one
alert per breach.

:func:`watch` reads every job's status from its repositories (the operations layer's
:func:`~airflow_backup.operations.status.statuses`), writes the metrics file, and finds the
breaches: ``rpo_breach`` (newest backup older than the RPO), ``drill_stale`` (no drill within
``drill.max_age``) and ``config_error`` (a job left out because it is invalid). Each breach has
a key and a fingerprint — the newest snapshot, the newest drill, the problems' text — so a
breach is alerted once, when it appears or changes, not on every watch; the caller keeps the
returned state between watches (the Airflow DAG ``status__<config>`` in a Variable, the CLI in
a ``--state-file``). A breach that clears leaves the state, and alerts again if it returns.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.load import LoadedConfig
from airflow_backup.jobs.notify import Notice, deliver, format_notice, send
from airflow_backup.jobs.repos import job_watches
from airflow_backup.operations.outcome import Outcome, Status
from airflow_backup.operations.spec import CacheSpec
from airflow_backup.operations.status import JobStatus, format_age, statuses, write_metrics

__all__ = ["Breach", "WatchOutcome", "breaches", "state_from_json", "watch"]


@dataclass(frozen=True, slots=True)
class Breach:
    """One problem the watch found: ``key`` names it (``rpo_breach:JOB``,
    ``drill_stale:JOB``, ``config_error:jobs.JOB``), ``fingerprint`` changes when it is a
    new occurrence, ``notice`` is its alert."""

    key: str
    fingerprint: str
    notice: Notice


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchOutcome(Outcome):
    """What a watch found: every job's status, the breaches in force (``state``: key →
    fingerprint, to pass to the next watch), the keys alerted this time and how many
    notification URLs accepted them. Its status is failed when any breach is in force."""

    jobs: tuple[JobStatus, ...] = ()
    state: dict[str, str] = field(default_factory=dict)
    alerted: tuple[str, ...] = ()
    delivered: int = 0


def breaches(loaded: LoadedConfig, sts: list[JobStatus], now: float) -> list[Breach]:
    """Return the breaches in ``sts`` (statuses of ``loaded``'s jobs) and ``loaded``'s left-
    out parts, each with its alert."""
    out: list[Breach] = []
    for st in sts:
        if st.rpo_breach:
            out.append(Breach(f"rpo_breach:{st.job}", st.last_snapshot or "none", Notice(
                st.job, "rpo_breach",
                f"backup job {st.job}: RPO BREACHED: the newest backup is {format_age(st.age)} old "
                f"(RPO {format_age(st.rpo)})", repository=st.location,
                snapshots=[st.last_snapshot] if st.last_snapshot else [],
                details={"repository_health": st.health})))
        if st.drill_stale:
            since = None if st.drill_time is None else now - st.drill_time
            out.append(Breach(f"drill_stale:{st.job}", f"{st.drill_time or 0:.0f}", Notice(
                st.job, "drill_stale",
                f"backup job {st.job}: restore drill STALE: the last drill was "
                f"{format_age(since)} {'ago' if since is not None else ''}".rstrip()
                + f" (limit {format_age(st.drill_max_age)})", repository=st.location)))
    for part, problems in sorted(loaded.broken.items()):
        text = "\n".join(problems)
        out.append(Breach(f"config_error:{part}",
                          hashlib.sha256(text.encode()).hexdigest()[:16],
                          Notice(part.split(".", 1)[1], "config_error",
                                 f"{part} of {loaded.path} is invalid and was left out: "
                                 f"{problems[0] if problems else ''}",
                                 error=text)))
    return out


def _send_config_error(config: Config, notice: Notice) -> int:
    # A left-out job has no valid alert settings: the config's own, else every valid job's
    # (those that want config errors).
    sources = [config.notifications] if config.notifications is not None else [
        j.notifications for j in config.jobs.values()]
    urls: list[str] = []
    for settings in sources:
        if "config_error" in settings.on:
            try:
                urls += settings.all_urls()
            except ConfigError:
                urls += settings.urls
    urls = list(dict.fromkeys(urls))
    if not urls:
        return 0
    title, body = format_notice(config, notice)
    return deliver(urls, title, body, "failure", label="config")


def watch(loaded: LoadedConfig, previous: dict[str, str] | None = None, *,
          jobs: list[str] | None = None, alert: bool = True, now: float | None = None,
          metrics_file: str = "", cache: CacheSpec | None = None) -> WatchOutcome:
    """Check ``jobs`` (default: every valid job) of ``loaded`` and its left-out parts; if
    ``alert``, alert each breach whose fingerprint differs from ``previous`` (the last
    watch's ``state``); write the metrics (``metrics_file``, default the config's). Never
    raises for an unreachable repository: that job's status says so (and its RPO counts as
    breached if no snapshot is found)."""
    now = time.time() if now is None else now
    previous = previous or {}
    config = loaded.config
    sts = statuses(job_watches(config, jobs, cache), now=now)
    path = metrics_file or config.metrics_file or ""
    if path:
        write_metrics(path, sts)
    found = breaches(loaded, sts, now)
    alerted: list[str] = []
    delivered = 0
    for b in found:
        if not alert or previous.get(b.key) == b.fingerprint:
            continue
        alerted.append(b.key)
        if b.notice.event == "config_error":
            delivered += _send_config_error(config, b.notice)
        else:
            delivered += send(config, b.notice)
    state = {b.key: b.fingerprint for b in found}
    return WatchOutcome(status=Status.FAILED if found else Status.SUCCESS, jobs=tuple(sts),
                        state=state, alerted=tuple(alerted), delivered=delivered)


def state_from_json(doc: object) -> dict[str, str]:
    """Return a saved watch state (``WatchOutcome.state``) from JSON; anything else is an
    empty state (every breach in force is alerted again)."""
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}

