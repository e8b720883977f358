"""JobNotifier: a configured job's alerts (its Apprise URLs and events) from Airflow callbacks.

The DAGs built from the jobs config use it as every task's ``on_failure_callback`` (it runs
once, when a task has used up its retries: never on a retry) and as the deadline-alert
callback in the triggerer (``async_notify``) when a run overruns its window. Messages are the
same as ``airflow-backup run`` sends (:mod:`airflow_backup.jobs.notify`): they name the job, the
failed step and the first line of its error, and never hold secrets.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from airflow.sdk import BaseNotifier, Context

from airflow_backup.errors import BackupError, first_line
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.load import load_config_isolated
from airflow_backup.jobs.notify import Notice, deliver, failure_notice, send
from airflow_backup.operations.outcome import parse_choice

__all__ = ["AlertReason", "JobNotifier", "run_links"]


def run_links(context: Context) -> dict[str, str]:
    """Return where an alert's reader finds the run: ``run`` (its id), ``log`` (the task's
    log page) or, without a task (the triggerer's deadline alert), ``run_page``."""
    run: Any = context.get("dag_run")
    # The triggerer passes the run as its REST payload (a dict), workers an object.
    get = run.get if isinstance(run, dict) else (lambda k, d="": getattr(run, k, d))
    run_id, dag_id = str(get("run_id", "") or ""), str(get("dag_id", "") or "")
    links = {"run": run_id} if run_id else {}
    ti = context.get("ti") or context.get("task_instance")
    try:
        log_url = str(getattr(ti, "log_url", "") or "")
    except Exception:  # a task instance without a configured base URL; the run id remains
        log_url = ""
    if log_url:
        links["log"] = log_url
    elif run_id and dag_id:
        from urllib.parse import quote

        from airflow.sdk.configuration import conf

        base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
        links["run_page"] = f"{base}/dags/{dag_id}/runs/{quote(run_id)}"
    return links


class AlertReason(enum.StrEnum):
    """Why a JobNotifier sends: a task failed for good, or a run overran its window."""

    FAILURE = "failure"
    DEADLINE = "deadline"


class JobNotifier(BaseNotifier):
    """Notify about job ``job`` (or, for maintenance DAGs, every job stored in
    ``repository``) of the jobs config at ``config_path``. ``reason``: ``failure`` (a task
    failed for good) or ``deadline`` (the run overran ``window`` seconds)."""

    template_fields = ()

    def __init__(self, *, config_path: str, job: str = "", repository: str = "",
                 reason: str = "failure", window: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if bool(job) == bool(repository):
            raise ValueError("JobNotifier needs exactly one of job and repository")
        self.config_path = config_path
        self.job = job
        self.repository = repository
        # A plain string after the check: the triggerer rebuilds the notifier from JSON kwargs.
        self.reason = parse_choice(AlertReason, reason, "reason").value
        self.window = window

    def _notice(self, context: Context, job: str) -> Notice:
        links = run_links(context)
        if self.reason == AlertReason.DEADLINE:
            run_id = links.get("run", "")
            notice = Notice(job, "failure", f"backup job {job} has not finished within its "
                            f"window of {self.window:.0f}s"
                            + (f" (run {run_id})" if run_id else ""), "deadline",
                            f"run {run_id} overran its window" if run_id else "run overran "
                            "its window")
        else:
            ti = context.get("ti") or context.get("task_instance")
            step = str(getattr(ti, "task_id", "") or "task")
            attempts = int(getattr(ti, "try_number", 0) or 0)
            notice = failure_notice(job, step, first_line(context.get("exception")), attempts,
                                    None)
        notice.details.update(links)
        return notice

    def _send(self, context: Context) -> int:
        config = load_config_isolated(self.config_path).config
        try:
            # A failed run changes the job's status: the metrics file says so too.
            from airflow_backup.jobs.runner import publish_metrics

            publish_metrics(config)
        except (BackupError, OSError) as exc:
            self.log.warning("metrics not written: %s", first_line(exc))
        if self.job:
            if self.job not in config.jobs:  # made invalid since the DAG was parsed
                self.log.warning("job %s is no longer valid in %s: its alert goes out with "
                                 "the status watch's config_error", self.job,
                                 self.config_path)
                return 0
            return send(config, self._notice(context, self.job))
        return self._send_repository(config, context)

    def _send_repository(self, config: Config, context: Context) -> int:
        # A repository has no alert settings of its own: its jobs' failure recipients get it.
        jobs = [n for n, j in config.jobs.items()
                if j.repository == self.repository and "failure" in j.notifications.on]
        urls = list(dict.fromkeys(u for n in jobs for u in config.jobs[n].notifications.all_urls()))
        if not urls:
            return 0
        ti = context.get("ti") or context.get("task_instance")
        step = str(getattr(ti, "task_id", "") or "task")
        body = "\n".join([
            f"maintenance of repository {self.repository} FAILED in step {step}", "",
            f"error: {first_line(context.get('exception'))}",
            f"jobs stored there: {', '.join(jobs)}",
            f"runbook: {config.runbook or 'airflow-backup runbook CONFIG (generate it)'}"])
        return deliver(urls, f"airflow-backup: repository {self.repository}: MAINTENANCE "
                       "FAILURE", body, "failure", label=f"repository {self.repository}")

    def notify(self, context: Context) -> None:
        """Send synchronously (task failure callbacks run in the worker)."""
        try:
            sent = self._send(context)
        except (BackupError, OSError) as exc:
            self.log.error("job alert not sent: %s", first_line(exc))
            return
        self.log.info("job alert (%s) accepted by %d notification URL(s)", self.reason, sent)

    async def async_notify(self, context: Context) -> None:
        """Send from the triggerer (deadline alerts) without blocking its event loop."""
        await asyncio.to_thread(self.notify, context)
