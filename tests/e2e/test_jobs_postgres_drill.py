"""A PostgreSQL restore drill through the real CLI: it passes on a good backup (scratch
database on the server, recorded row counts and checksums compared, a SQL assertion, scratch
database dropped) and fails, with one alert, once a pack of that backup is corrupted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from support.cli import run_cli
from support.receiver import receiver
from support.sources import PG_BASE, db_tools, pg, unique

__all__ = ["db_tools", "pg"]  # fixtures

PW = "pg-drill-pw"


def _scratch_dbs(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'abk_drill_%'")
    return [r[0] for r in rows.fetchall()]


@pytest.mark.slow
def test_postgres_drill_passes_then_fails_on_a_corrupted_pack(
        tmp_path: Path, pg: psycopg.Connection[Any], db_tools: dict[str, str]) -> None:
    db = unique("abk_jobs_pg")
    pg.execute(f'CREATE DATABASE "{db}"')
    try:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db,
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, amount numeric, note text)")
            conn.execute("INSERT INTO orders SELECT g, g * 1.5, md5(g::text) "
                         "FROM generate_series(1, 2000) g")
        repo = tmp_path / "repo"
        assert run_cli(repo, "init", password=PW).returncode == 0
        before = set(_scratch_dbs(pg))
        with receiver() as rx:
            cfg = tmp_path / "jobs.yaml"
            cfg.write_text(yaml.safe_dump({
                "repositories": {"main": {"url": str(repo), "password_env": "REPO_PW"}},
                "jobs": {"orders": {
                    "sources": [f"{PG_BASE}/{db}"], "repository": "main",
                    "retry": {"attempts": 1},
                    "notifications": {"urls": [rx.url],
                                      "on": ["failure", "drill_failure", "drill_success"]},
                    "drill": {"target": f"{PG_BASE}/", "max_rto": "5m",
                              "sql": [{"query": "SELECT count(*) FROM orders", "expect": 2000},
                                      {"query": "SELECT sum(amount) FROM orders",
                                       "expect": "3001500.0"}]}}}}))
            env = {"REPO_PW": PW}
            r = run_cli(None, "run", str(cfg), env=env, password=None)
            assert r.returncode == 0, r.stderr
            r = run_cli(None, "drill", str(cfg), "--json", env=env, password=None)
            assert r.returncode == 0, r.stderr
            good = json.loads(r.stdout.splitlines()[-1])
            assert good["ok"] and 0 < good["rto"] < 300
            assert any("row counts and checksums" in c for c in good["checks"])
            assert any("count(*)" in c for c in good["checks"])
            assert [m["type"] for m in rx.messages] == ["success"]
            assert set(_scratch_dbs(pg)) == before, "the scratch database is dropped"

            # Corrupt the data packs of that backup (flip bytes in the middle of each).
            packs = [p for p in (repo / "data").rglob("*") if p.is_file()]
            assert packs
            for p in packs:
                raw = bytearray(p.read_bytes())
                mid = len(raw) // 2
                raw[mid:mid + 16] = bytes(b ^ 0xFF for b in raw[mid:mid + 16])
                p.write_bytes(bytes(raw))
            r = run_cli(None, "drill", str(cfg), "--json", env=env, password=None)
            assert r.returncode == 1
            bad = json.loads(r.stdout.splitlines()[-1])
            assert not bad["ok"] and bad["error"]
            assert len(rx.messages) == 2
            alert = rx.messages[1]
            assert alert["type"] == "failure" and "DRILL FAILURE" in alert["title"]
            assert "failed step: drill" in alert["message"]
            assert set(_scratch_dbs(pg)) == before, "the scratch database is dropped"
        r = run_cli(repo, "snapshots", "--json", "--tag", "airflow-backup-drill", password=PW)
        drills = json.loads(r.stdout)
        assert [d["airflow_backup"]["drill"]["ok"] for d in drills] == [True, False]
        r = run_cli(None, "status", str(cfg), "--json", env=env, password=None)
        assert json.loads(r.stdout)["jobs"][0]["drill_ok"] is False
    finally:
        pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
