"""The DAG factory: every job and repository of a jobs config becomes Airflow DAGs.

A DAG file holds two lines::

    from airflow_backup.provider.dags import backup_dags
    globals().update(backup_dags("backups.yaml"))   # relative to this DAG file

and gets, per job ``<job>``:

* ``backup__<job>`` — export → validate → store → verify → notify → retention, on the job's
  cron schedule (manual if it has none). Every task retries per the job's ``retry`` policy
  (``attempts`` - 1 retries, ``initial_delay``, exponential growth by ``multiplier``, capped
  at ``max_delay``; Airflow adds its own deterministic jitter); a task that fails for good
  sends the job's failure alert once; with ``schedule.window`` a deadline alert fires when a
  run is still going that long after it was queued. Only a retryable error (a storage blip,
  a held lock) uses the retries. The notify task, which runs once ``verify`` succeeded,
  emits an event on the job's Asset ``airflow-backup://jobs/<job>``, writes the metrics file
  and, per the job's ``on_incomplete``, fails or warns for a partial or degraded backup.
* ``restore__<job>`` — a restore of one of the job's sources, launched by hand: its params
  (source, target, snapshot or as-of time, on_existing) form the trigger form;
* ``drill__<job>`` — a restore drill of the repository the backup landed in, run by that
  Asset (after every verified backup) unless
  ``drill.schedule`` is set (then on that cron, or both with ``drill.after_backup``);

and per repository ``<name>``: ``maintenance__<name>`` — ``check --read-data-subset`` then
``prune``, on ``maintenance.schedule`` (default Sundays 04:00 UTC); and per config file
``<stem>.yaml``: ``status__<stem>`` — the status watch (every job's RPO and drill age, and the
config's invalid jobs; each breach alerted once), on ``watch.schedule`` (default every 10
minutes).

A job that is invalid on its own (a bad key, an unset variable, a broken repository it stores
into) loses only its own DAGs: the others are generated, the problem is logged by the
dag-processor and the status watch sends it as a ``config_error`` alert.

Tasks re-read the config at run time and pass only small JSON results through XCom; the
config holds secret references, never secrets.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
from typing import Any

# Public since Airflow 3.1, but missing from airflow.sdk's type stub.
from airflow.sdk import (  # type: ignore[attr-defined]
    DAG,
    Asset,
    AssetOrTimeSchedule,
    AsyncCallback,
    CronTriggerTimetable,
    DeadlineAlert,
    DeadlineReference,
)

from airflow_backup.jobs.config import Config, Job, ScheduleConfig
from airflow_backup.jobs.load import load_config_isolated
from airflow_backup.operations.restore import OnExisting
from airflow_backup.provider.assets import backup_asset
from airflow_backup.provider.notifications.job import JobNotifier
from airflow_backup.provider.operators.jobs import (
    JobCopyOperator,
    JobDrillOperator,
    JobExportOperator,
    JobNotifyOperator,
    JobRestoreOperator,
    JobRetentionOperator,
    JobStoreOperator,
    JobValidateOperator,
    JobVerifyOperator,
    JobWatchOperator,
    RepositoryCheckOperator,
    RepositoryPruneOperator,
)

__all__ = ["backup_dags", "retry_arguments", "status_dag_id"]

log = logging.getLogger("airflow_backup.provider.dags")

#: Start of every generated DAG: in the past, and runs are never back-filled (catchup off).
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
TAG = "airflow-backup"


def retry_arguments(job: Job) -> dict[str, Any]:
    """Return the task arguments that carry the job's retry policy into Airflow."""
    policy = job.retry
    return {"retries": policy.attempts - 1,
            "retry_delay": dt.timedelta(seconds=policy.initial_delay),
            "retry_exponential_backoff": float(policy.multiplier),
            "max_retry_delay": dt.timedelta(seconds=max(policy.max_delay,
                                                        policy.initial_delay))}


def _cron(schedule: ScheduleConfig) -> CronTriggerTimetable:
    return CronTriggerTimetable(schedule.cron, timezone=schedule.timezone)


def _caller_dir() -> str:
    # The DAG file calling backup_dags(): relative config paths are taken from its folder.
    frame = sys._getframe(2)
    caller = frame.f_globals.get("__file__")
    return os.path.dirname(os.path.abspath(caller)) if caller else os.getcwd()


def _under_dags_test() -> bool:
    # `airflow dags test` (dag.test()) of Airflow 3.3.2 crashes when a successful run has a
    # deadline alert: it re-reads the alerts by id from a copy of the DAG that holds their
    # definitions instead (DeadlineAlertModel.get_by_id receives a dict).
    return os.path.basename(sys.argv[0]) == "airflow" and sys.argv[1:3] == ["dags", "test"]


def _backup_dag(config_path: str, name: str, job: Job, deadline_alerts: bool) -> DAG:
    notifier = JobNotifier(config_path=config_path, job=name)
    deadline = None
    if deadline_alerts and job.schedule and job.schedule.window:
        deadline = DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=dt.timedelta(seconds=job.schedule.window),
            callback=AsyncCallback(JobNotifier, kwargs={
                "config_path": config_path, "job": name, "reason": "deadline",
                "window": job.schedule.window}))
    with DAG(f"backup__{name}", schedule=_cron(job.schedule) if job.schedule else None,
             start_date=START, catchup=False, max_active_runs=1,
             description=job.description or f"backup job {name}",
             doc_md=f"Backup job **{name}** of `{config_path}` (airflow-backup).",
             tags=[TAG, f"job:{name}"], deadline=deadline,
             default_args={**retry_arguments(job), "on_failure_callback": notifier}) as dag:
        common = {"config_path": config_path, "job": name}
        export = JobExportOperator(task_id="export", **common)
        validate = JobValidateOperator(task_id="validate", export=export.output, **common)
        store = JobStoreOperator(task_id="store", export=export.output, **common)
        verify = JobVerifyOperator(task_id="verify", store=store.output, **common)
        notify = JobNotifyOperator(task_id="notify", store=store.output, **common)
        retention = JobRetentionOperator(task_id="retention", store=store.output, **common)
        export >> validate >> store >> verify >> notify >> retention
        if job.copy_to:
            retention >> JobCopyOperator(task_id="copy", store=store.output, **common)
    return dag


def _drill_schedule(name: str, job: Job) -> Any:
    asset: Asset = backup_asset(name)
    drill = job.drill
    if drill is None or drill.schedule is None:
        return [asset]
    if drill.after_backup:
        return AssetOrTimeSchedule(timetable=_cron(drill.schedule), assets=asset)
    return _cron(drill.schedule)


def _drill_dag(config_path: str, name: str, job: Job) -> DAG:
    with DAG(f"drill__{name}", schedule=_drill_schedule(name, job), start_date=START,
             catchup=False, max_active_runs=1,
             description=f"restore drill of backup job {name}",
             doc_md=f"Restore drill of job **{name}** of `{config_path}`: restores the "
                    "latest snapshots into a sandbox, validates them, measures the RTO and "
                    "records the result in the repository.",
             tags=[TAG, f"job:{name}", "drill"]) as dag:
        JobDrillOperator(task_id="drill", config_path=config_path, job=name, retries=0)
    return dag


def _restore_dag(config_path: str, name: str, job: Job) -> DAG:
    from airflow.sdk import Param

    from airflow_backup.jobs.export import is_source_url, shown_source

    shown = [shown_source(s) for s in job.sources]
    paths = [shown_source(s) for s in job.sources if not is_source_url(s)]
    params = {
        "source": Param(paths[0] if paths else shown[0], type="string", enum=shown,
                        title="Source", description="which of the job's sources to restore"),
        "target": Param(type="string", minLength=1, title="Target",
                        description="a directory for files; for a data source its URL: the "
                                    "original (to put it back) or a new database, bucket "
                                    "prefix or Airflow home"),
        "snapshot": Param("latest", type="string", minLength=1, title="Snapshot",
                          description="'latest' or a snapshot id (prefix); ignored when "
                                      "'as_of' is set"),
        "as_of": Param("", type="string", title="As of",
                       description="restore the newest backup at or before this time "
                                   "(YYYY-MM-DD HH:MM[:SS], local time, or RFC 3339)"),
        "on_existing": Param("fail", type="string", enum=[e.value for e in OnExisting],
                             title="If the target exists",
                             description="fail; skip or overwrite existing keys; replace "
                                         "(restore into an existing database, table or "
                                         "prefix)"),
    }
    # Unpaused from the start: it only runs when someone triggers it, and a restore must
    # not wait for someone to find the pause toggle.
    with DAG(f"restore__{name}", schedule=None, start_date=START, catchup=False,
             max_active_runs=1, params=params, is_paused_upon_creation=False,
             description=f"restore a snapshot of backup job {name}",
             doc_md=f"Restore of job **{name}** of `{config_path}`: pick the source, the "
                    "target and the snapshot (or a time) in the trigger form. The restored "
                    "data is compared with the counts and checksums recorded at backup time.",
             tags=[TAG, f"job:{name}", "restore"]) as dag:
        JobRestoreOperator(task_id="restore", config_path=config_path, job=name, retries=0,
                           source="{{ params.source }}", target="{{ params.target }}",
                           snapshot="{{ params.snapshot }}", as_of="{{ params.as_of }}",
                           on_existing="{{ params.on_existing }}")
    return dag


def _maintenance_dag(config_path: str, name: str, config: Config) -> DAG:
    settings = config.repositories[name].maintenance
    notifier = JobNotifier(config_path=config_path, repository=name)
    with DAG(f"maintenance__{name}", schedule=_cron(settings.schedule), start_date=START,
             catchup=False, max_active_runs=1,
             description=f"check and prune repository {name}",
             doc_md=f"Maintenance of repository **{name}** of `{config_path}`: "
                    f"check --read-data-subset {settings.check_subset or '(structure only)'}"
                    + (", then prune." if settings.prune else "."),
             tags=[TAG, f"repository:{name}", "maintenance"],
             default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=5),
                           "on_failure_callback": notifier}) as dag:
        common = {"config_path": config_path, "repository": name}
        check = RepositoryCheckOperator(task_id="check",
                                        read_data_subset=settings.check_subset, **common)
        if settings.prune:
            check >> RepositoryPruneOperator(task_id="prune", max_unused=settings.max_unused,
                                             **common)
    return dag


def status_dag_id(config_path: str) -> str:
    """Return the id of the status-watch DAG of the config file at ``config_path``:
    ``status__<file name without extension>``."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    return "status__" + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def _status_dag(config_path: str, config: Config) -> DAG:
    dag_id = status_dag_id(config_path)
    # Unpaused from the start: a watch that waits to be switched on watches nothing.
    with DAG(dag_id, schedule=_cron(config.watch.schedule), start_date=START, catchup=False,
             max_active_runs=1, is_paused_upon_creation=False,
             description="RPO, drill age and config errors of every job",
             doc_md=f"Status watch of `{config_path}` (airflow-backup): every job's RPO and "
                    "drill age and the config's invalid jobs; each breach is alerted once "
                    f"(state in the Variable `airflow_backup__{dag_id}`). A run fails while "
                    "a breach is in force.",
             tags=[TAG, "status"]) as dag:
        JobWatchOperator(task_id="watch", config_path=config_path,
                         state_variable=f"airflow_backup__{dag_id}", retries=0)
    return dag


def backup_dags(config_path: str | os.PathLike[str], *,
                deadline_alerts: bool | None = None) -> dict[str, DAG]:
    """Given a jobs config (a relative path is taken from the calling DAG file's folder),
    return its DAGs by DAG id: ``backup__<job>`` and ``drill__<job>`` per job,
    ``maintenance__<repository>`` per repository, ``status__<config file stem>`` once.
    ``deadline_alerts``: attach the deadline alert of jobs with a ``schedule.window``
    (default: yes, except under ``airflow dags test``, which cannot run DAGs with deadline
    alerts on Airflow 3.3). A job that is invalid on its own is left out (logged; the status
    DAG alerts it); raise ConfigError (shown by Airflow as the DAG file's import error) if
    nothing in the config is valid."""
    path = os.fspath(config_path)
    if not os.path.isabs(path):
        path = os.path.join(_caller_dir(), path)
    path = os.path.normpath(path)
    # Lazy: an unset ${VAR} that only the workers have does not break the DAGs (each task
    # reads the config again, strictly, where it runs).
    loaded = load_config_isolated(path, lazy=True)
    config = loaded.config
    for part, problems in loaded.broken.items():
        log.error("%s: %s is invalid and generates no DAGs: %s", path, part, "; ".join(problems))
    if deadline_alerts is None:
        deadline_alerts = not _under_dags_test()
        if not deadline_alerts and any(j.schedule and j.schedule.window
                                       for j in config.jobs.values()):
            log.warning("airflow dags test: the jobs' deadline alerts (schedule.window) are "
                        "left out (Airflow cannot test DAGs that have one)")
    dags: dict[str, DAG] = {}
    for name, job in config.jobs.items():
        for dag in (_backup_dag(path, name, job, deadline_alerts),
                    _drill_dag(path, name, job), _restore_dag(path, name, job)):
            dags[dag.dag_id] = dag
    for name in config.repositories:
        dag = _maintenance_dag(path, name, config)
        dags[dag.dag_id] = dag
    dag = _status_dag(path, config)
    dags[dag.dag_id] = dag
    return dags
