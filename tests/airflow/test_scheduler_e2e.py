"""Real scheduler end-to-end: Airflow components as subprocesses on a PostgreSQL metadata DB
(scheduler.py), DAGs from the provider's DAG factory (a jobs config + its two-line DAG file).

1. LocalExecutor (scheduler, dag-processor, triggerer, api-server): ``backup__files``
   triggered through the REST API succeeds, its store task's Asset event runs
   ``drill__files`` (scheduled on that Asset), and a hand-written DAG's deferrable freshness
   sensor waits in the triggerer until a fresh snapshot appears.
2. CeleryExecutor with two workers (Redis broker): ``backup__a`` and ``backup__b`` (two jobs,
   one repository) triggered at once both succeed, their tasks spread over both workers; the
   engine and ``restic check`` agree on the repository.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scheduler import (
    AirflowStack,
    ApiClient,
    airflow_stack,
    ensure_redis,
    redis_empty_db,
    redis_forget_queue,
)

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.operations.tags import DRILL_TAG
from airflow_backup.provider.operators.base import job_tag
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.local import LocalStorage
from conftest import KDF, PASSWORD, open_repo

pytestmark = pytest.mark.slow

CONN_ID = "backup_repository_default"
PASSWORD_ENV = "E2E_REPO_PASSWORD"
# The jobs config of the DAG factory (provider/dags.py); the DAG file next to it reads it by
# a relative path. Retries: a job's retention (exclusive lock) can meet a concurrent drill or
# backup (shared locks) and then retries (RepositoryLocked is retryable).
CONFIG = """\
version: 1
repositories:
  main:
    url: {repo}
    password_env: """ + PASSWORD_ENV + """
jobs:
{jobs}"""
JOB = """\
  {name}:
    sources: [{data}]
    repository: main
    retention: {{keep_last: 3}}
    retry: {{attempts: 3, initial_delay: 1, multiplier: 2, max_delay: 5, jitter: 0}}
    verification: {{read_back: true, check_subset: "100%"}}
    drill: {{max_rto: 10m}}
"""
FACTORY_DAG_FILE = """\
from airflow_backup.provider.dags import backup_dags

globals().update(backup_dags("backups.yaml"))
"""
SENSOR_DAG_FILE = """\
import datetime
from airflow.sdk import DAG
from airflow_backup.provider.sensors.freshness import BackupFreshnessSensor

with DAG("e2e_fresh", schedule=None, start_date=datetime.datetime(2026, 1, 1),
         catchup=False) as dag:
    # Job "late" has no snapshot yet: the sensor must defer until the test makes one.
    BackupFreshnessSensor(task_id="fresh", job="late", deferrable=True,
                          max_age=datetime.timedelta(hours=1), poke_interval=2, timeout=180)
"""


def _make_repo(path: Path) -> Path:
    Repository.init(LocalStorage(str(path)), PASSWORD, kdf=KDF)
    return path


def _repo_env(repo_dir: Path) -> dict[str, str]:
    """The repository password for the jobs config and the connection the sensor uses,
    given to every component through the environment only."""
    return {PASSWORD_ENV: PASSWORD, f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({
        "conn_type": "backup_repository", "host": str(repo_dir), "password": PASSWORD,
        "extra": {"retry": {"retry_attempts": "2", "retry_base_delay": "0"}}})}


def _data(root: Path, seed: str) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(f"{seed}\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(150_000))
    return root


def _write_factory_dags(stack: AirflowStack, repo_dir: Path, jobs: dict[str, Path]) -> None:
    """The DAG folder: backups.yaml (one job per entry of ``jobs``, all into the repository)
    and the two-line DAG file of the factory."""
    (stack.dags_folder / "backups.yaml").write_text(CONFIG.format(
        repo=repo_dir, jobs="".join(JOB.format(name=n, data=d) for n, d in jobs.items())))
    (stack.dags_folder / "backups.py").write_text(FACTORY_DAG_FILE)


def _backups(repo_dir: Path) -> list[Snapshot]:
    """The repository's backup snapshots (not the drills' records), read by the engine."""
    return [s for s in open_repo(repo_dir).list_snapshots() if DRILL_TAG not in s.tags]


def _ready(api: ApiClient, dag_ids: list[str], unpause: list[str]) -> None:
    """Wait for the api-server and the parsed DAGs (no import errors); unpause some."""
    api.wait_ready()
    api.wait_dags(dag_ids)
    errors = api.get("/api/v2/importErrors")
    assert errors["total_entries"] == 0, errors
    for dag_id in unpause:
        api.unpause(dag_id)


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[tuple[AirflowStack, Path]]:
    """A LocalExecutor deployment (no components started yet) and its repository."""
    repo_dir = _make_repo(tmp_path / "repo")
    with airflow_stack(tmp_path / "home", "LocalExecutor", **_repo_env(repo_dir)) as stack:
        yield stack, repo_dir


def test_local_executor_backup_asset_drill_and_deferred_sensor(
        local_stack: tuple[AirflowStack, Path], tmp_path: Path) -> None:
    stack, repo_dir = local_stack
    late = _data(tmp_path / "late", "late")
    _write_factory_dags(stack, repo_dir, {"files": _data(tmp_path / "data", "local")})
    (stack.dags_folder / "e2e_fresh.py").write_text(SENSOR_DAG_FILE)
    started = time.monotonic()
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        stack.start(name, name)
    api = ApiClient(stack)
    _ready(api, ["backup__files", "drill__files", "maintenance__main", "e2e_fresh"],
           unpause=["backup__files", "drill__files", "e2e_fresh"])
    ready = time.monotonic()

    fresh_run = api.trigger("e2e_fresh")
    backup_run = api.trigger("backup__files")

    # The sensor is deferred, its trigger taken up by the triggerer.
    def deferred_in_triggerer() -> dict[str, Any] | None:
        ti = api.task_instance("e2e_fresh", fresh_run, "fresh")
        assert ti["state"] not in ("success", "failed", "up_for_retry"), ti
        trigger = ti.get("trigger") or {}
        if ti["state"] == "deferred" and trigger.get("triggerer_id"):
            return ti
        return None
    deferred = stack.wait(deferred_in_triggerer, 90, "the sensor to be deferred in the triggerer")
    assert deferred["trigger"]["classpath"].endswith("BackupFreshnessTrigger"), deferred

    # backup__files: export -> validate -> store -> verify -> notify -> retention.
    backup = api.wait_run("backup__files", backup_run, 120)
    assert backup["state"] == "success", api.describe_run("backup__files", backup_run)
    tis = api.task_instances("backup__files", backup_run)
    assert sorted(tis) == sorted(["export", "validate", "store", "verify", "notify",
                                  "retention"])
    assert {ti["state"] for ti in tis.values()} == {"success"}
    ids = [s["id"] for s in api.xcom("backup__files", backup_run, "store")["snapshots"]]
    backups = _backups(repo_dir)
    assert [s.id for s in backups] == ids and len(ids) == 1
    assert job_tag("files") in backups[0].tags

    # The store task's Asset event ran drill__files, which restored that very snapshot.
    def drill_run() -> dict[str, Any] | None:
        runs = [r for r in api.runs("drill__files") if r["state"] in ("success", "failed")]
        return runs[0] if runs else None
    drill = stack.wait(drill_run, 90, "the asset-triggered drill run to finish")
    assert len(api.runs("drill__files")) == 1
    assert drill["run_type"] == "asset_triggered", drill
    assert drill["state"] == "success", api.describe_run("drill__files", drill["dag_run_id"])
    events = api.upstream_asset_events("drill__files", drill["dag_run_id"])
    assert [(e["uri"], e["source_dag_id"], e["source_task_id"], e["source_run_id"])
            for e in events] == [
        # The event comes from notify, which runs only after verify succeeded.
        ("airflow-backup://jobs/files", "backup__files", "notify", backup_run)], events
    assert events[0]["extra"]["snapshot_ids"] == ids
    drilled = api.xcom("drill__files", drill["dag_run_id"], "drill")
    assert drilled["ok"] is True and drilled["snapshots"] == ids, drilled
    records = [s for s in open_repo(repo_dir).list_snapshots() if DRILL_TAG in s.tags]
    assert [s.id for s in records] == [drilled["record"]]

    # Still deferred (nothing fresh for "late"): a snapshot now makes the trigger fire.
    assert api.task_instance("e2e_fresh", fresh_run, "fresh")["state"] == "deferred"
    # But first let the scheduler take in the executor's event for the process that deferred:
    # if the trigger fires before it does, Airflow 3.3 takes that late "success" event for
    # the resumed try and fails the task ("state changed externally"), a scheduler race
    # that a loaded machine makes likely.
    deferral_done = (f"Received executor event with state success for task instance "
                     f"TaskInstanceKey(dag_id='e2e_fresh', task_id='fresh', run_id='{fresh_run}'")
    stack.wait(lambda: deferral_done in (stack.home / "scheduler.log").read_text(
        errors="replace") or None, 60, "the scheduler to take in the deferral's end")
    repo = open_repo(repo_dir)
    with repo.lock(exclusive=False):
        made = Archiver(repo).backup(BackupOptions(paths=[str(late)],
                                                   tags=[job_tag("late")])).snapshot
    fresh = api.wait_run("e2e_fresh", fresh_run, 60)
    assert fresh["state"] == "success", api.describe_run("e2e_fresh", fresh_run)
    assert api.xcom("e2e_fresh", fresh_run, "fresh")["snapshot_id"] == made.id
    ti = api.task_instance("e2e_fresh", fresh_run, "fresh")
    assert ti["try_number"] == 1, ti  # resumed after the trigger, not retried
    # The triggerer's own log of this trigger records it firing with that snapshot.
    trigger_log = stack.task_log("e2e_fresh", fresh_run, "fresh", trigger=True)
    fired = [json.loads(line) for line in trigger_log.splitlines()
             if '"Trigger fired event"' in line]
    assert len(fired) == 1 and made.id in fired[0]["result"], trigger_log[-3000:]
    # No component or task logged the repository password.
    leaked = [p for p in stack.home.rglob("*.log") if PASSWORD in p.read_text(errors="replace")]
    assert not leaked, leaked
    print(f"\nlocal e2e: migrate {stack.migrate_seconds:.1f}s, "
          f"components ready {ready - started:.1f}s, "
          f"runs {time.monotonic() - ready:.1f}s, "
          f"backup tries {_tries(tis)}")


def _tries(tis: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {task: ti["try_number"] for task, ti in tis.items()}


WORKER_HOSTNAME_MODULE = '''\
"""Hostname callable of the e2e Celery workers: the worker's name from its environment."""
import os


def hostname() -> str:
    return os.environ["E2E_WORKER_NAME"]
'''


@pytest.fixture
def celery_stack(tmp_path: Path) -> Iterator[tuple[AirflowStack, Path]]:
    """A CeleryExecutor deployment (no components started yet) and its repository. Its
    tasks go to a queue of its own on an empty Redis database (and are deleted after)."""
    ensure_redis()
    repo_dir = _make_repo(tmp_path / "repo")
    redis_db = redis_empty_db()
    queue = f"e2e_{secrets.token_hex(4)}"
    try:
        with airflow_stack(tmp_path / "home", "CeleryExecutor",
                           **_repo_env(repo_dir)) as stack:
            stack.extra_env.update({
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + stack.sql_alchemy_conn.replace(
                    "postgresql+psycopg2://", "postgresql://"),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            })
            yield stack, repo_dir
    finally:  # after the workers stopped
        redis_forget_queue(redis_db, queue, prefix="e2e_")


def test_celery_two_workers_two_backups_one_repository(
        celery_stack: tuple[AirflowStack, Path], tmp_path: Path) -> None:
    stack, repo_dir = celery_stack
    queue = stack.extra_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    jobs = ["a", "b"]
    _write_factory_dags(stack, repo_dir, {j: _data(tmp_path / f"data-{j}", j) for j in jobs})
    # Each worker reports its own name as the task instances' hostname.
    hostname_dir = tmp_path / "worker-hostname"
    hostname_dir.mkdir()
    (hostname_dir / "e2e_worker_hostname.py").write_text(WORKER_HOSTNAME_MODULE)
    started = time.monotonic()
    for name in ("api-server", "scheduler", "dag-processor"):
        stack.start(name, name)
    workers = ["worker1", "worker2"]
    for name in workers:
        env = stack.env(E2E_WORKER_NAME=f"e2e-{name}",
                        AIRFLOW__CORE__HOSTNAME_CALLABLE="e2e_worker_hostname.hostname",
                        PYTHONPATH=os.pathsep.join(
                            [str(hostname_dir), *filter(None, [os.environ.get("PYTHONPATH")])]))
        stack.start(name, "celery", "worker", "--queues", queue,
                    "--celery-hostname", f"{name}-{queue}@%h", "--concurrency", "1",
                    "--skip-serve-logs", env=env)
    api = ApiClient(stack)
    dags = [f"backup__{job}" for job in jobs]
    _ready(api, [*dags, *(f"drill__{j}" for j in jobs), "maintenance__main"], unpause=dags)
    _wait_workers_ready(stack, workers)
    ready = time.monotonic()

    run_ids = {dag_id: api.trigger(dag_id) for dag_id in dags}
    hosts: set[str] = set()
    tries = {}
    for dag_id, run_id in run_ids.items():
        run = api.wait_run(dag_id, run_id, 150)
        assert run["state"] == "success", api.describe_run(dag_id, run_id)
        tis = api.task_instances(dag_id, run_id)
        assert {ti["state"] for ti in tis.values()} == {"success"}, tis
        assert {ti["queue"] for ti in tis.values()} == {queue}, tis
        hosts |= {ti["hostname"] for ti in tis.values()}
        tries[dag_id] = _tries(tis)
    # Concurrency 1 and prefetch 1 per worker: tasks queued while one worker is busy go to the
    # other, so both took part.
    assert hosts == {"e2e-worker1", "e2e-worker2"}, hosts

    stores = {job: api.xcom(f"backup__{job}", run_ids[f"backup__{job}"], "store")
              for job in jobs}
    backups = _backups(repo_dir)
    assert sorted(s.id for s in backups) == sorted(
        sn["id"] for store in stores.values() for sn in store["snapshots"])
    assert sorted(t for s in backups for t in s.tags) == sorted(job_tag(j) for j in jobs)
    restic = shutil.which("restic")
    if restic is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("CI must have restic (make tools)")
        pytest.skip("restic not installed (make tools)")
    check = subprocess.run([restic, "-r", str(repo_dir), "check", "--no-cache"],
                           env={**os.environ, "RESTIC_PASSWORD": PASSWORD},
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"\ncelery e2e: migrate {stack.migrate_seconds:.1f}s, "
          f"components ready {ready - started:.1f}s, runs {time.monotonic() - ready:.1f}s, "
          f"tries {tries}")


def _wait_workers_ready(stack: AirflowStack, workers: list[str]) -> None:
    """Wait until each Celery worker logged that it is ready to take tasks."""
    for name in workers:
        log = stack.home / f"{name}.log"
        stack.wait(lambda p=log: " ready." in p.read_text(errors="replace"),  # type: ignore[misc]
                   90, f"celery {name} to be ready")
