"""A job reads each database once: its export step only probes the source (server
reachable, database there), and the store step describes it — counts, checksums, the
MariaDB read lock and the dumps — once, at the export's snapshot. Before, the export step
described every source fully and the store step did it all again: PostgreSQL checksummed
every table twice, MariaDB took FLUSH TABLES WITH READ LOCK twice and started dumps that
were thrown away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_backup.jobs.load import parse_config
from airflow_backup.jobs.runner import run_job
from airflow_backup.repository.repo import Repository
from airflow_backup.sources import mysql, postgres
from airflow_backup.storage.local import LocalStorage
from support.sources import db_tools, maria, pg, unique

__all__ = ["db_tools", "maria", "pg"]

PW = "read-once-pw"


def _counted(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(owner, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, counting)
    return calls


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    repo = tmp_path / "repo"
    Repository.init(LocalStorage(str(repo)), PW)
    monkeypatch.setenv("READ_ONCE_PW", PW)
    config = parse_config({
        "repositories": {"main": {"url": str(repo), "password_env": "READ_ONCE_PW"}},
        "jobs": {"j": {"repository": "main", "sources": [source]}}})
    result = run_job(config, "j")
    assert result.status == "success", result.to_json()


def test_a_postgresql_job_checksums_each_table_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg: Any, db_tools: Any) -> None:
    db = unique("abk_once")
    pg.execute(f'CREATE DATABASE "{db}"')
    try:
        with postgres.psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}",
                                      autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 50)")
        stats = _counted(monkeypatch, postgres, "pg_table_stats")
        _run(tmp_path, monkeypatch, f"postgresql://postgres@127.0.0.1:5432/{db}")
        assert len(stats) == 1  # the store step's describe
    finally:
        pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def test_a_mariadb_job_locks_and_dumps_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, maria: Any, db_tools: Any) -> None:
    db = unique("abk_once")
    with maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"CREATE TABLE `{db}`.t (id int) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO `{db}`.t VALUES (1), (2)")
    try:
        dumps = _counted(monkeypatch, mysql.MySQLSource, "_start_dumps")
        _run(tmp_path, monkeypatch, f"mysql://root@127.0.0.1:3306/{db}")
        assert len(dumps) == 1
    finally:
        with maria.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
