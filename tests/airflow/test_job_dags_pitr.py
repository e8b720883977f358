"""The generated DAGs of a ``postgresql+pitr://`` job, run with dag.test(): ``backup__<job>``
stores a base backup (through the same backup operation as ``airflow-backup run``) and
``drill__<job>`` recovers it to a random time of the window on a scratch server, with amcheck
and a sentinel-row assertion. The cluster is the test's own and archives its WAL into the
job's repository with ``pg archive-wal`` (as in tests/e2e/test_pg_pitr.py)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.pitr.catalog import BASE_TAG
from conftest import DAGS
from support.pg_cluster import own_cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from test_pg_pitr import (
    PASSWORD,
    _cli,
    _connect,
    _launcher,
    _mark,
    _start_archiving,
    _wait_archived,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _own_dag_files() -> Iterator[None]:
    yield
    for path in DAGS.glob("jobs_pitr*.py"):
        path.unlink()


def _xcom(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalars(select(XComModel.value).where(
            XComModel.dag_id == dr.dag_id, XComModel.run_id == dr.run_id,
            XComModel.task_id == task_id, XComModel.key == "return_value")).one()
    return json.loads(value) if isinstance(value, str) else value


def test_generated_backup_and_drill_dags_of_a_pitr_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with own_cluster() as cluster:
        base, repo_dir = cluster.base, cluster.base / "repo"
        _cli(base, repo_dir, "init")
        _start_archiving(cluster, " ".join([*_launcher(), "-r", str(repo_dir), "pg",
                                            "archive-wal", "%p"]))
        monkeypatch.setenv("AF_PITR_REPO_PASSWORD", PASSWORD)
        monkeypatch.setenv("AIRFLOW_BACKUP_CACHE_DIR", str(tmp_path / "cache"))
        config = tmp_path / "jobs_pitr.yaml"
        config.write_text(f"""
version: 1
repositories:
  main: {{url: {repo_dir}, password_env: AF_PITR_REPO_PASSWORD}}
jobs:
  pg:
    sources: ["postgresql+pitr://postgres@127.0.0.1:{cluster.port}/postgres"]
    repository: main
    retry: {{attempts: 1}}
    drill:
      max_rto: 10m
      sql: [{{query: "SELECT count(*) FROM sentinel WHERE id = 0", expect: 1}}]
""")
        (DAGS / "jobs_pitr.py").write_text(
            "from airflow_backup.provider.dags import backup_dags\n"
            f"globals().update(backup_dags({str(config)!r}))\n")
        from airflow_backup.provider.dags import backup_dags

        dags = backup_dags(config, deadline_alerts=False)
        with _connect(cluster.port) as conn:
            conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, at timestamptz)")
            _mark(conn, 0)
            backup = dags["backup__pg"].test()
            assert backup.state == "success", {ti.task_id: ti.state
                                               for ti in backup.get_task_instances()}
            _mark(conn, 1)
            _wait_archived(conn)
        store = _xcom(backup, "store")
        (snap,) = store["snapshots"]
        assert snap["kind"] == "postgresql_pitr" and snap["export"]["kind"] == "basebackup"
        stored = open_repo_as(repo_dir).load_snapshot(snap["id"])
        assert BASE_TAG in stored.tags and "job=pg" in stored.tags
        drill_run = dags["drill__pg"].test()
        assert drill_run.state == "success"
        drill = _xcom(drill_run, "drill")
        assert drill["ok"], drill
        assert any(c.startswith("amcheck: bt_index_check passed") for c in drill["checks"])
        assert any("sentinel" in c for c in drill["checks"]) and drill["target_time"]
        print(f"\ndrill DAG: RTO {drill['rto']:.1f}s, target {drill['target_time']}")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def open_repo_as(repo_dir: Path) -> Any:
    """Open the repository (the test's password)."""
    from airflow_backup.repository.repo import Repository
    from airflow_backup.storage.local import LocalStorage

    return Repository.open(LocalStorage(str(repo_dir)), PASSWORD)
