"""Airflow metadata through the CLI, with the real ``airflow`` CLI of .venv-airflow.

SQLite home: existing keys with other values fail / skip / overwrite, and another alembic
revision is refused unless forced. PostgreSQL metadata database: the database dump restores
into a new database that a fresh home (same fernet key) reads back identically.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.cli import ok_stdout as _ok
from support.cli import one_line_error, repo, run_cli
from support.sources import (
    AIRFLOW_CONN_SECRET,
    PG_BASE,
    airflow_bin,
    airflow_run,
    airflow_state,
    airflow_templates,
    clone_home,
    db_tools,
    pg,
    unique,
)

__all__ = ["airflow_bin", "airflow_templates", "db_tools", "pg", "repo"]  # fixtures

pytestmark = pytest.mark.slow


_one_line_error = functools.partial(one_line_error, exit_code=1)






def test_existing_keys_fail_skip_overwrite_and_revision_check(
        airflow_bin: str, airflow_templates: dict[str, Path], tmp_path: Path,
        repo: Path) -> None:
    src = clone_home(airflow_templates["src"], tmp_path / "src")
    original = airflow_state(airflow_bin, src, tmp_path)
    out = _ok(run_cli(repo, "backup", f"airflow://{src}?airflow={airflow_bin}", "--tag", "af"))
    assert "snapshot" in out
    snap = json.loads(_ok(run_cli(repo, "snapshots", "--json")))[0]
    meta = snap["airflow_backup"]["source"]
    assert meta["airflow_version"] == "3.3.2"
    assert meta["alembic_revision"] and len(meta["fernet_key_fingerprint"]) == 16
    assert meta["database"]["kind"] == "sqlite"
    assert AIRFLOW_CONN_SECRET not in json.dumps(snap)
    assert "fernet_key =" not in json.dumps(snap)

    # a target where two keys exist with other values
    dst = clone_home(airflow_templates["src"], tmp_path / "dst")
    airflow_run(airflow_bin, dst, ["variables", "set", "plain", "local value"])
    airflow_run(airflow_bin, dst, ["pools", "set", "etl", "3", "local pool"])
    target = f"airflow://{dst}?airflow={airflow_bin}"
    line = _one_line_error(run_cli(repo, "restore", "latest", "--target", target))
    assert "2 key(s) exist in the target with other values" in line
    _ok(run_cli(repo, "restore", "latest", "--target", target, "--on-existing", "skip"))
    state = airflow_state(airflow_bin, dst, tmp_path)
    assert state["variables"]["plain"] == "local value"
    assert state["pools"]["etl"]["slots"] == 3
    assert state["connections"] == original["connections"]
    out = _ok(run_cli(repo, "restore", "latest", "--target", target, "--on-existing",
                      "overwrite"))
    assert "variables: 2 rows, rows+checksum match" in out
    assert airflow_state(airflow_bin, dst, tmp_path) == original

    # another schema revision is refused unless forced
    other = clone_home(airflow_templates["empty"], tmp_path / "other", new_fernet_key=True)
    with sqlite3.connect(other / "airflow.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
    line = _one_line_error(run_cli(repo, "restore", "latest", "--target",
                                   f"airflow://{other}?airflow={airflow_bin}"))
    assert "deadbeef0000" in line and "--force" in line


@pytest.fixture
def pg_meta(pg: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    names = (unique("af_meta"), unique("af_meta_restored"))
    pg.execute(f'CREATE DATABASE "{names[0]}"')
    yield names
    for n in names:
        pg.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')


def _pg_home(path: Path, db: str, fernet: str) -> Path:
    path.mkdir()
    (path / "airflow.cfg").write_text(
        "[core]\nload_examples = False\n"
        f"fernet_key = {fernet}\n"
        f"[database]\nsql_alchemy_conn = postgresql+psycopg2://postgres@127.0.0.1:5432/{db}\n")
    return path


def test_postgresql_metadata_database_round_trip(
        airflow_bin: str, pg_meta: tuple[str, str], tmp_path: Path, repo: Path,
        db_tools: dict[str, str]) -> None:
    from cryptography.fernet import Fernet

    db, restored_db = pg_meta
    fernet = Fernet.generate_key().decode()
    home = _pg_home(tmp_path / "home", db, fernet)
    airflow_run(airflow_bin, home, ["db", "migrate"])
    airflow_run(airflow_bin, home, ["variables", "set", "--description", "d", "region",
                                    "eu-west-1"])
    airflow_run(airflow_bin, home, ["connections", "add", "s3_logs", "--conn-type", "aws",
                                    "--conn-login", "AKIA", "--conn-password",
                                    AIRFLOW_CONN_SECRET])
    airflow_run(airflow_bin, home, ["pools", "set", "io", "4", "io bound"])
    original = airflow_state(airflow_bin, home, tmp_path)

    _ok(run_cli(repo, "backup", f"airflow://{home}?airflow={airflow_bin}", "--tag", "af-pg"))
    snap = json.loads(_ok(run_cli(repo, "snapshots", "--json")))[0]
    meta = snap["airflow_backup"]["source"]
    assert meta["database"]["kind"] == "postgresql"
    assert meta["database"]["url"] == f"{PG_BASE}/{db}"
    assert meta["database"]["tables"][f"{db}/public.variable"]["rows"] == 1
    assert AIRFLOW_CONN_SECRET not in json.dumps(snap)

    # restore the metadata database dump as a new database; a fresh home reads it back
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "af-pg", "--target",
                      f"{PG_BASE}/{restored_db}"))
    assert "public.connection: 1 rows, rows+checksum match" in out
    fresh = _pg_home(tmp_path / "fresh", restored_db, fernet)
    assert airflow_state(airflow_bin, fresh, tmp_path) == original


def test_a_changed_default_pool_restores_into_a_fresh_home_without_overwrite(
        airflow_bin: str, airflow_templates: dict[str, Path], tmp_path: Path,
        repo: Path) -> None:
    """Every new home has its stock default_pool (128 slots): the backup's value replaces it
    like a missing key; a default_pool someone changed in the target still conflicts."""
    src = clone_home(airflow_templates["src"], tmp_path / "src")
    airflow_run(airflow_bin, src, ["pools", "set", "default_pool", "64", "Default pool"])
    _ok(run_cli(repo, "backup", f"airflow://{src}?airflow={airflow_bin}"))
    fresh = clone_home(airflow_templates["empty"], tmp_path / "fresh")
    _ok(run_cli(repo, "restore", "latest", "--target", f"airflow://{fresh}?airflow={airflow_bin}"))
    assert airflow_state(airflow_bin, fresh, tmp_path)["pools"]["default_pool"]["slots"] == 64
    changed = clone_home(airflow_templates["empty"], tmp_path / "changed")
    airflow_run(airflow_bin, changed, ["pools", "set", "default_pool", "32", "Default pool"])
    line = _one_line_error(run_cli(repo, "restore", "latest", "--target",
                                   f"airflow://{changed}?airflow={airflow_bin}"))
    assert "1 key(s) exist in the target with other values (first: pool 'default_pool')" in line
