"""BackupNotifier: send task/DAG outcomes through Apprise (Slack, e-mail, ntfy, webhooks, …)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apprise
from airflow.sdk import BaseNotifier, Context

from airflow_backup.jobs.notify import quiet_apprise

__all__ = ["BackupNotifier", "send_backup_notification"]

_STATE = "{{ ti.state.value | default(ti.state) }}"
# A task callback's context has ``ti``; a deadline alert's (in the triggerer) has only
# ``dag_run`` (the REST payload) and ``deadline``.
DEFAULT_TITLE = ("airflow-backup: {% if ti is defined %}{{ ti.dag_id }}.{{ ti.task_id }} "
                 + _STATE + "{% else %}{{ dag_run.dag_id }} missed its deadline{% endif %}")
DEFAULT_BODY = ("{% if ti is defined %}{{ ti.dag_id }}.{{ ti.task_id }} (run {{ run_id }}, "
                "try {{ ti.try_number }}) ended in state " + _STATE + "."
                "{% if exception %} Error: {{ exception }}{% endif %}"
                "{% else %}{{ dag_run.dag_id }} (run {{ dag_run.dag_run_id }}, state "
                "{{ dag_run.state }}) had not finished by its deadline "
                "{{ deadline.deadline_time }}.{% endif %}")


class BackupNotifier(BaseNotifier):
    """Send one notification to every Apprise URL in ``urls`` (``"json://host/path"``,
    ``"slack://…"``, ``"mailto://…"``; see Apprise's docs) and/or those in the ``urls`` extra
    (or host) of the Airflow connection ``apprise_conn_id`` — keep tokens there rather than in
    the DAG. ``title`` and ``body`` are Jinja templates rendered against the task context.

    Use it as ``on_failure_callback=BackupNotifier(...)`` or ``on_success_callback``, or as a
    Deadline Alert callback (``AsyncCallback(BackupNotifier, kwargs={"urls": [...]})``): the
    default title and body fit both; the synchronous (``notify``) and the triggerer's
    asynchronous (``async_notify``) paths both send.
    A notification every service refused raises RuntimeError (Airflow logs callback errors).
    """

    template_fields: Sequence[str] = ("title", "body")

    def __init__(self, *, urls: Sequence[str] | str = (), apprise_conn_id: str | None = None,
                 title: str = DEFAULT_TITLE, body: str = DEFAULT_BODY,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.apprise_conn_id = apprise_conn_id
        self.title = title
        self.body = body
        if not self.urls and not apprise_conn_id:
            raise ValueError("BackupNotifier needs urls or apprise_conn_id")

    def _apprise(self) -> apprise.Apprise:
        targets = list(self.urls)
        if self.apprise_conn_id:
            from airflow_backup.connections import apprise_urls
            from airflow_backup.provider.connections import airflow_connection

            targets += apprise_urls(airflow_connection(self.apprise_conn_id))
        quiet_apprise()
        apobj = apprise.Apprise()
        for url in targets:
            if not apobj.add(url):
                raise ValueError("an Apprise URL of BackupNotifier is not valid")
        return apobj

    def notify(self, context: Context) -> None:
        """Send synchronously (worker, DAG processor)."""
        if not self._apprise().notify(body=self.body, title=self.title):
            raise RuntimeError("Apprise could not deliver the backup notification")

    async def async_notify(self, context: Context) -> None:
        """Send from the triggerer (deadline alerts)."""
        if not await self._apprise().async_notify(body=self.body, title=self.title):
            raise RuntimeError("Apprise could not deliver the backup notification")


send_backup_notification = BackupNotifier
