"""Airflow as a platform team deploys it: separate api-server, scheduler, dag-processor and
triggerer on a PostgreSQL metadata database, under LocalExecutor and under CeleryExecutor
(Redis broker, one worker), with DAGs generated from one jobs config.

The config holds:

The repository (URL and password) and the alerts' Apprise URLs are Airflow connections
created through the REST API: no component has them in its environment.

* ``meta``: Airflow's own metadata (``airflow://AIRFLOW_HOME`` — the deployment's home,
  its database the stack's PostgreSQL one) and a PostgreSQL database; it must back up inside
  the tasks exactly as from a shell (the task supervisor hides the database URL from task
  processes), and its drill — started by the backup's Asset event — restores both;
  ``restore__meta``, triggered with params, restores the first of two PostgreSQL snapshots
  into a new database;
* ``late``: an RPO of one minute and no backup: the status DAG, run twice, alerts the breach
  exactly once at a local HTTP receiver;
* ``broken``: ``keep_daily: -1`` — only its own DAGs are missing, every other DAG is there,
  no import error, and the status DAG sends one ``config_error`` alert.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from scheduler import (
    AirflowStack,
    ApiClient,
    airflow_stack,
    ensure_redis,
    redis_empty_db,
    redis_forget_queue,
)
from test_scheduler_e2e import _backups, _make_repo, _wait_workers_ready

from conftest import PASSWORD, open_repo
from support.receiver import Receiver, receiver

pytestmark = pytest.mark.slow

PG = "postgresql://postgres@127.0.0.1:5432"
CONFIG = """\
version: 1
repositories:
  main:
    connection: backup_repo   # URL and password: an Airflow connection, nothing on workers
watch:
  schedule: {{cron: "0 0 1 1 *"}}   # runs are triggered by the test
notifications:
  connection: alerts   # the Apprise URLs (tokens) are in an Airflow connection
jobs:
  meta:
    sources: ["airflow://{home}{meta_query}", "{pg}/{db}"]
    repository: main
    verification: {{read_back: true, check_subset: "100%"}}
    drill: {{target: "{pg}/postgres", max_rto: 10m}}
    notifications: {{connection: alerts, on: [failure, drill_failure, rpo_breach]}}
  late:
    sources: [{late}]
    repository: main
    rpo: 1m
    notifications: {{connection: alerts, on: [failure, rpo_breach]}}
  broken:
    sources: [{late}]
    repository: main
    retention: {{keep_daily: -1}}
"""
FACTORY_DAG_FILE = """\
from airflow_backup.provider.dags import backup_dags

globals().update(backup_dags("backups.yaml"))
"""


def _sql(db: str, query: str) -> Any:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db, autocommit=True) as c:
        cur = c.execute(query)
        return cur.fetchone() if cur.description else None


@pytest.fixture
def app_db() -> Iterator[str]:
    """A PostgreSQL database with a table of 300 rows, dropped afterwards."""
    db = f"e2e_app_{secrets.token_hex(4)}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                         autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        c.execute("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 300) g")
    yield db
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                         autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture(params=["LocalExecutor", "CeleryExecutor"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path
               ) -> Iterator[tuple[AirflowStack, Path]]:
    """A deployment (no components started) and its repository; Celery's tasks go to a
    queue of their own on an empty Redis database."""
    executor = str(request.param)
    repo_dir = _make_repo(tmp_path / "repo")
    env: dict[str, str] = {}  # no repository URL or password in any component's environment
    if executor == "LocalExecutor":
        with airflow_stack(tmp_path / "home", executor, **env) as stack:
            yield stack, repo_dir
        return
    ensure_redis()
    redis_db = redis_empty_db()
    queue = f"e2e_{secrets.token_hex(4)}"
    try:
        with airflow_stack(tmp_path / "home", executor, **env) as stack:
            stack.extra_env.update({
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + stack.sql_alchemy_conn.replace(
                    "postgresql+psycopg2://", "postgresql://"),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            })
            yield stack, repo_dir
    finally:
        redis_forget_queue(redis_db, queue, prefix="e2e_")


def _start(stack: AirflowStack) -> None:
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        stack.start(name, name)
    if stack.executor == "CeleryExecutor":
        queue = stack.extra_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
        stack.start("worker1", "celery", "worker", "--queues", queue,
                    "--celery-hostname", f"worker1-{queue}@%h", "--skip-serve-logs")
        _wait_workers_ready(stack, ["worker1"])


def _titles(rx: Receiver) -> list[str]:
    with rx.lock:
        return sorted(m["title"] for m in rx.messages)


def test_production_deployment_backs_up_airflow_itself_watches_rpo_and_isolates_a_broken_job(
        deployment: tuple[AirflowStack, Path], app_db: str, tmp_path: Path) -> None:
    stack, repo_dir = deployment
    assert PASSWORD not in json.dumps(stack.env()) and str(repo_dir) not in json.dumps(
        stack.env())
    late = tmp_path / "late"
    late.mkdir()
    (late / "x.txt").write_text("x\n")
    # A Celery worker rewrites the environment memory its tasks could recover the database
    # URL from: there the metadata database comes from an Airflow connection, created
    # through the REST API (the workers' environment has no such variable).
    meta_query = "" if stack.executor == "LocalExecutor" else "?conn_id=airflow_metadata"
    with receiver() as rx:
        (stack.dags_folder / "backups.yaml").write_text(CONFIG.format(
            home=stack.home, pg=PG,
            db=app_db, late=late, meta_query=meta_query))
        (stack.dags_folder / "backups.py").write_text(FACTORY_DAG_FILE)
        started = time.monotonic()
        _start(stack)
        api = ApiClient(stack)
        expected = ["backup__meta", "drill__meta", "restore__meta", "backup__late",
                    "drill__late", "restore__late", "maintenance__main", "status__backups"]
        api.wait_ready()
        api.post("/api/v2/connections", {
            "connection_id": "backup_repo", "conn_type": "backup_repository",
            "host": str(repo_dir), "password": PASSWORD})
        api.post("/api/v2/connections", {
            "connection_id": "alerts", "conn_type": "generic",
            "extra": json.dumps({"urls": [rx.url]})})
        if meta_query:
            api.post("/api/v2/connections", {
                "connection_id": "airflow_metadata", "conn_type": "postgres",
                "host": "127.0.0.1", "port": 5432, "login": "postgres",
                "schema": stack.db_name})
        api.wait_dags(expected)
        # The broken job lost only its own DAGs, and the file imported without error.
        assert api.get("/api/v2/importErrors")["total_entries"] == 0
        dag_ids = {d["dag_id"] for d in api.get("/api/v2/dags", limit=100)["dags"]}
        assert dag_ids == set(expected), dag_ids
        # The status and restore DAGs start unpaused; backups wait for the operator.
        assert not api.dag("status__backups")["is_paused"]
        assert not api.dag("restore__meta")["is_paused"]
        for dag_id in ("backup__meta", "drill__meta"):
            api.unpause(dag_id)
        ready = time.monotonic()

        # meta: Airflow's metadata and a PostgreSQL database, inside the tasks.
        run_id = api.trigger("backup__meta")
        run = api.wait_run("backup__meta", run_id, 240)
        assert run["state"] == "success", api.describe_run("backup__meta", run_id)
        stored = api.xcom("backup__meta", run_id, "store")
        kinds = sorted(s["kind"] for s in stored["snapshots"])
        assert kinds == ["airflow", "postgresql"], stored
        backups = _backups(repo_dir)
        airflow_snap = next(s for s in backups if "/airflow" in s.paths)
        meta = airflow_snap.extra["airflow_backup"]["source"]
        assert meta["database"]["kind"] == "postgresql", meta
        assert meta["alembic_revision"], meta

        def drill_done() -> dict[str, Any] | None:
            runs = [r for r in api.runs("drill__meta") if r["state"] in ("success", "failed")]
            return runs[0] if runs else None
        drill = stack.wait(drill_done, 240, "the asset-triggered drill of meta")
        assert drill["state"] == "success", api.describe_run("drill__meta", drill["dag_run_id"])
        drilled = api.xcom("drill__meta", drill["dag_run_id"], "drill")
        assert drilled["ok"] and len(drilled["snapshots"]) == 2, drilled
        # The drill links its run, its log and the backup run that started it, and so does
        # its record in the repository.
        assert drilled["links"]["backup_run"] == f"backup__meta/{run_id}", drilled["links"]
        assert drilled["links"]["run"] == drill["dag_run_id"]
        assert "/dags/drill__meta/runs/" in drilled["links"]["log"]
        (record,) = [s for s in open_repo(repo_dir).list_snapshots()
                     if s.id == drilled["record"]]
        assert record.extra["airflow_backup"]["drill"]["links"] == drilled["links"]

        # restore__meta: the FIRST PostgreSQL snapshot, chosen by the run's params, into a
        # new database, after a second backup of more rows.
        first_pg = next(s["id"] for s in stored["snapshots"] if s["kind"] == "postgresql")
        _sql(app_db, "INSERT INTO orders SELECT g, 'later' FROM generate_series(301, 350) g")
        second = api.trigger("backup__meta")
        assert api.wait_run("backup__meta", second, 240)["state"] == "success"
        restored_db = f"{app_db}_restored"
        restore_run = api.trigger("restore__meta", source=f"{PG}/{app_db}",
                                  target=f"{PG}/{restored_db}", snapshot=first_pg[:8])
        done = api.wait_run("restore__meta", restore_run, 240)
        assert done["state"] == "success", api.describe_run("restore__meta", restore_run)
        result = api.xcom("restore__meta", restore_run, "restore")
        assert result["snapshot_id"] == first_pg, result
        assert _sql(restored_db, "SELECT count(*), max(id) FROM orders") == (300, 300)
        _sql("postgres", f'DROP DATABASE "{restored_db}" WITH (FORCE)')

        # The status watch, twice: one rpo_breach (late) and one config_error (broken).
        for _ in range(2):
            status_run = api.trigger("status__backups")
            status = api.wait_run("status__backups", status_run, 120)
            assert status["state"] == "failed", "breaches in force fail the watch run"
        watched = [ti for ti in api.task_instances("status__backups", status_run).values()]
        assert [ti["state"] for ti in watched] == ["failed"]
        titles = _titles(rx)
        assert titles == ["airflow-backup: job broken: CONFIG ERROR",
                          "airflow-backup: job late: RPO BREACH"], titles
        with rx.lock:
            config_error = next(m for m in rx.messages if "CONFIG ERROR" in m["title"])
        assert "jobs.broken.retention.keep_daily: must be ≥ 0" in config_error["message"]
    leaked = [p for p in stack.home.rglob("*.log") if PASSWORD in p.read_text(errors="replace")]
    assert not leaked, leaked
    assert open_repo(repo_dir).list_snapshots()
    print(f"\n{stack.executor} production e2e: components ready {ready - started:.1f}s, "
          f"runs {time.monotonic() - ready:.1f}s; alerts {json.dumps(titles)}; "
          f"pid {os.getpid()}")
