"""Real scheduler end-to-end: Airflow components as subprocesses on a PostgreSQL metadata DB.

1. LocalExecutor (scheduler, dag-processor, triggerer, api-server): a backup DAG triggered
   through the REST API succeeds, its Asset event runs the drill DAG scheduled on that Asset,
   and a deferrable freshness sensor waits in the triggerer until a fresh snapshot appears.
2. CeleryExecutor with two workers (Redis broker): two backup DAGs triggered at once into one
   repository both succeed, on different workers; the engine and ``restic check`` agree.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import textwrap
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
from airflow_backup.provider.operators.base import job_tag
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.local import LocalStorage
from conftest import KDF, PASSWORD, open_repo

pytestmark = pytest.mark.slow

CONN_ID = "backup_repository_default"
HEADER = """\
import datetime
from airflow.sdk import DAG
from airflow_backup.provider.operators.backup import BackupOperator, backup_asset
from airflow_backup.provider.operators.restore import RestoreDrillOperator
from airflow_backup.provider.sensors.freshness import BackupFreshnessSensor
START = datetime.datetime(2026, 1, 1)
"""


def _make_repo(path: Path) -> Path:
    Repository.init(LocalStorage(str(path)), PASSWORD, kdf=KDF)
    return path


def _conn_env(repo_dir: Path) -> dict[str, str]:
    """The repository connection for every component (password in the environment only)."""
    return {f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({
        "conn_type": "backup_repository", "host": str(repo_dir), "password": PASSWORD,
        "extra": {"retry": {"retry_attempts": "2", "retry_base_delay": "0"}}})}


def _data(root: Path, seed: str) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(f"{seed}\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(150_000))
    return root


def _write_dag(stack: AirflowStack, dag_id: str, body: str) -> None:
    (stack.dags_folder / f"{dag_id}.py").write_text(HEADER + textwrap.dedent(body))


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[tuple[AirflowStack, Path]]:
    """A LocalExecutor deployment (no components started yet) and its repository."""
    repo_dir = _make_repo(tmp_path / "repo")
    with airflow_stack(tmp_path / "home", "LocalExecutor", **_conn_env(repo_dir)) as stack:
        yield stack, repo_dir


def test_local_executor_backup_asset_drill_and_deferred_sensor(
        local_stack: tuple[AirflowStack, Path], tmp_path: Path) -> None:
    stack, repo_dir = local_stack
    data = _data(tmp_path / "data", "local")
    late = _data(tmp_path / "late", "late")
    _write_dag(stack, "e2e_backup", f"""
        with DAG("e2e_backup", schedule=None, start_date=START, catchup=False) as dag:
            BackupOperator(task_id="backup", job="files", paths=[{str(data)!r}])
        """)
    _write_dag(stack, "e2e_drill", """
        with DAG("e2e_drill", schedule=[backup_asset("files")], start_date=START,
                 catchup=False) as dag:
            RestoreDrillOperator(task_id="drill", job="files")
        """)
    # Job "late" has no snapshot yet: the sensor must defer until the test makes one.
    _write_dag(stack, "e2e_fresh", """
        with DAG("e2e_fresh", schedule=None, start_date=START, catchup=False) as dag:
            BackupFreshnessSensor(task_id="fresh", job="late", deferrable=True,
                                  max_age=datetime.timedelta(hours=1), poke_interval=2,
                                  timeout=180)
        """)
    started = time.monotonic()
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        stack.start(name, name)
    api = ApiClient(stack)
    api.wait_ready()
    dags = ["e2e_backup", "e2e_drill", "e2e_fresh"]
    api.wait_dags(dags)
    for dag_id in dags:
        api.unpause(dag_id)
    ready = time.monotonic()

    fresh_run = api.trigger("e2e_fresh")
    backup_run = api.trigger("e2e_backup")

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

    backup = api.wait_run("e2e_backup", backup_run, 90)
    assert backup["state"] == "success", api.describe_run("e2e_backup", backup_run)
    summary = api.xcom("e2e_backup", backup_run, "backup")
    snaps = open_repo(repo_dir).list_snapshots()
    assert [s.id for s in snaps] == [summary["snapshot_id"]]
    assert job_tag("files") in snaps[0].tags

    # The backup's Asset event scheduled the drill DAG, which restored that very snapshot.
    def drill_run() -> dict[str, Any] | None:
        runs = [r for r in api.runs("e2e_drill") if r["state"] in ("success", "failed")]
        return runs[0] if runs else None
    drill = stack.wait(drill_run, 90, "the asset-triggered drill run to finish")
    assert len(api.runs("e2e_drill")) == 1
    assert drill["run_type"] == "asset_triggered", drill
    assert drill["state"] == "success", api.describe_run("e2e_drill", drill["dag_run_id"])
    events = api.upstream_asset_events("e2e_drill", drill["dag_run_id"])
    assert [(e["uri"], e["source_dag_id"], e["source_run_id"]) for e in events] == [
        (f"airflow-backup://{CONN_ID}/files", "e2e_backup", backup_run)], events
    assert events[0]["extra"]["snapshot_id"] == summary["snapshot_id"]
    drilled = api.xcom("e2e_drill", drill["dag_run_id"], "drill")
    assert drilled["snapshot_id"] == summary["snapshot_id"] and drilled["files"] == 2

    # Still deferred (nothing fresh for "late"): a snapshot now makes the trigger fire.
    assert api.task_instance("e2e_fresh", fresh_run, "fresh")["state"] == "deferred"
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
          f"runs {time.monotonic() - ready:.1f}s")


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
    with airflow_stack(tmp_path / "home", "CeleryExecutor", **_conn_env(repo_dir)) as stack:
        stack.extra_env.update({
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + stack.sql_alchemy_conn.replace(
                "postgresql+psycopg2://", "postgresql://"),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        })
        try:
            yield stack, repo_dir
        finally:
            redis_forget_queue(redis_db, queue)


def test_celery_two_workers_two_backups_one_repository(
        celery_stack: tuple[AirflowStack, Path], tmp_path: Path) -> None:
    stack, repo_dir = celery_stack
    queue = stack.extra_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    jobs = ["a", "b"]
    for job in jobs:
        data = _data(tmp_path / f"data-{job}", job)
        _write_dag(stack, f"e2e_backup_{job}", f"""
            with DAG("e2e_backup_{job}", schedule=None, start_date=START, catchup=False) as dag:
                BackupOperator(task_id="backup", job={job!r}, paths=[{str(data)!r}])
            """)
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
    api.wait_ready()
    dags = [f"e2e_backup_{job}" for job in jobs]
    api.wait_dags(dags)
    for dag_id in dags:
        api.unpause(dag_id)
    _wait_workers_ready(stack, workers)
    ready = time.monotonic()

    run_ids = {dag_id: api.trigger(dag_id) for dag_id in dags}
    hosts = {}
    for dag_id, run_id in run_ids.items():
        run = api.wait_run(dag_id, run_id, 120)
        assert run["state"] == "success", api.describe_run(dag_id, run_id)
        ti = api.task_instance(dag_id, run_id, "backup")
        assert ti["queue"] == queue, ti
        hosts[dag_id] = ti["hostname"]
    # Concurrency 1 and prefetch 1 per worker: both tasks queued at once go to both workers.
    assert sorted(hosts.values()) == ["e2e-worker1", "e2e-worker2"], hosts

    summaries = {job: api.xcom(f"e2e_backup_{job}", run_ids[f"e2e_backup_{job}"], "backup")
                 for job in jobs}
    snaps = open_repo(repo_dir).list_snapshots()
    assert sorted(s.id for s in snaps) == sorted(s["snapshot_id"] for s in summaries.values())
    assert sorted(t for s in snaps for t in s.tags) == sorted(job_tag(j) for j in jobs)
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
          f"components ready {ready - started:.1f}s, runs {time.monotonic() - ready:.1f}s")


def _wait_workers_ready(stack: AirflowStack, workers: list[str]) -> None:
    """Wait until each Celery worker logged that it is ready to take tasks."""
    for name in workers:
        log = stack.home / f"{name}.log"
        stack.wait(lambda p=log: " ready." in p.read_text(errors="replace"),  # type: ignore[misc]
                   90, f"celery {name} to be ready")
