"""Fixtures and helpers for the data-source tests: real PostgreSQL and MariaDB servers, a moto
S3 server, the Airflow CLI in its own venv, and independent ways to fingerprint data.

The fingerprints here deliberately do not use airflow_backup's own counting/checksum code, so
a round-trip test compares the restored data with the original through a second opinion.

Import the fixtures into a test module explicitly (``from support.sources import pg, …``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from support.moto_source import MOTO_ENV, start_moto_server, stop_moto_server
from support.tools import in_ci, require_tool

__all__ = [
    "AIRFLOW_CONN_SECRET",
    "AIRFLOW_VENV",
    "MY_BASE",
    "PG_BASE",
    "airflow_bin",
    "airflow_env",
    "airflow_run",
    "airflow_state",
    "airflow_templates",
    "child_pids",
    "clone_home",
    "db_tools",
    "leftover_temp",
    "maria",
    "moto_endpoint",
    "my_fingerprint",
    "pg",
    "pg_fingerprint",
    "processes_matching",
    "sqlite_fingerprint",
    "unique",
]

PG_BASE = "postgresql://postgres@127.0.0.1:5432"
MY_BASE = "mysql://root@127.0.0.1:3306"
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = ROOT / ".venv-airflow"


def unique(prefix: str) -> str:
    """Return a fresh lower-case database/object name."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _wait(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.5)
    pytest.fail(f"{what} did not come up: {last}", pytrace=False)


def _pg_connect(db: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db,
                           autocommit=True, connect_timeout=5)


def _my_connect(db: str | None = None) -> Any:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database=db, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def db_tools() -> dict[str, str]:
    """The client programs the database sources run (fail on CI if missing)."""
    return {t: require_tool(t) for t in ("pg_dump", "pg_restore", "pg_dumpall", "psql",
                                         "pgbench", "mariadb-dump", "mariadb")}


@pytest.fixture(scope="session")
def pg() -> Iterator[psycopg.Connection[Any]]:
    """An admin connection to the local PostgreSQL; starts the cluster if it is down."""
    try:
        _pg_connect().close()
    except psycopg.Error:
        versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
        if not versions:
            pytest.fail("PostgreSQL is down and not installed here", pytrace=False)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main",
                        "start"], check=False, capture_output=True, timeout=120)
        _wait(lambda: _pg_connect().close(), "PostgreSQL")
    conn = _pg_connect()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def maria() -> Iterator[Any]:
    """An admin connection to the local MariaDB; starts the server if it is down."""
    try:
        _my_connect().close()
    except pymysql.MySQLError:
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background",
                        "--exec", "/usr/sbin/mariadbd"], check=False, capture_output=True,
                       timeout=60)
        _wait(lambda: _my_connect().close(), "MariaDB")
    conn = _my_connect()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; its dummy credentials are put in os.environ."""
    old = {k: os.environ.get(k) for k in MOTO_ENV}
    os.environ.update(MOTO_ENV)
    proc, endpoint = start_moto_server()
    yield endpoint
    stop_moto_server(proc)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def airflow_bin() -> str:
    """The ``airflow`` CLI from .venv-airflow (made by ``make airflow-venv`` if missing)."""
    binary = AIRFLOW_VENV / "bin" / "airflow"
    if not binary.exists():
        proc = subprocess.run(["make", "-C", str(ROOT), "airflow-venv"], capture_output=True,
                              timeout=1200, check=False)
        if proc.returncode != 0 or not binary.exists():
            message = f"cannot create {AIRFLOW_VENV}: {proc.stderr.decode()[-500:]}"
            if in_ci():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    return str(binary)


# ---- independent fingerprints --------------------------------------------------------------


def pg_fingerprint(db: str) -> dict[str, tuple[int, str]]:
    """``{schema.table: (rows, md5 of the sorted row texts)}`` for a PostgreSQL database."""
    out = {}
    with _pg_connect(db) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        for schema, name in tables:
            q = psycopg.sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), "
                "'') FROM {} t").format(psycopg.sql.Identifier(schema, name))
            count, digest = conn.execute(q).fetchone() or (0, "")
            out[f"{schema}.{name}"] = (int(count), str(digest))
    return out


def my_fingerprint(db: str) -> dict[str, tuple[int, str]]:
    """``{table: (rows, sha256 of the sorted row reprs)}`` for a MariaDB database."""
    out = {}
    conn = _my_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            for (name, _) in cur.fetchall():
                cur.execute(f"SELECT * FROM `{name}`")
                rows = sorted(repr(r) for r in cur.fetchall())
                out[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    finally:
        conn.close()
    return out


def sqlite_fingerprint(path: str | Path) -> dict[str, tuple[int, str]]:
    """``{table: (rows, sha256 of the sorted row reprs)}`` for a SQLite file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                    "AND name NOT LIKE 'sqlite_%' ORDER BY 1").fetchall():
            rows = sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{name}"'))
            out[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        return out
    finally:
        conn.close()


# ---- leftovers -------------------------------------------------------------------------------


def leftover_temp(tmpdir: str | Path) -> list[str]:
    """Names in ``tmpdir`` that airflow-backup's temp directories would have."""
    return sorted(n for n in os.listdir(tmpdir) if n.startswith("airflow-backup-"))


def child_pids() -> list[int]:
    """Live (non-zombie) child processes of this process."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(entry))
    return out


def processes_matching(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (zombies excluded)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            out.append(cmd)
    return out


# ---- Airflow homes -------------------------------------------------------------------------

#: The password of the connection in the template source home (must never reach metadata).
AIRFLOW_CONN_SECRET = "c0nn-Pa55-never-in-metadata"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for the airflow CLI working on ``home``."""
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **extra}


def airflow_run(airflow: str, home: Path, *commands: list[str], **extra: str) -> None:
    """Run airflow commands on ``home`` side by side; fail the test if one fails."""
    procs = [subprocess.Popen([airflow, *c], env=airflow_env(home, **extra),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in commands]
    for cmd, proc in zip(commands, procs, strict=True):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (cmd, err.decode()[-2000:])


def airflow_state(airflow: str, home: Path, workdir: Path, **extra: str) -> dict[str, Any]:
    """Variables, connections (with secrets) and pools of ``home``, as the CLI exports them."""
    out = workdir / f"state-{uuid.uuid4().hex[:8]}"
    out.mkdir(parents=True)
    airflow_run(airflow, home, ["variables", "export", str(out / "variables.json")],
                ["connections", "export", str(out / "connections.json")],
                ["pools", "export", str(out / "pools.json")], **extra)
    import json

    return {k: json.loads((out / f"{k}.json").read_text())
            for k in ("variables", "connections", "pools")}


def clone_home(template: Path, dest: Path, new_fernet_key: bool = False) -> Path:
    """Copy a migrated SQLite Airflow home, re-pointing its config at the copy.

    ``new_fernet_key`` gives the copy its own key (only for homes without encrypted rows).
    """
    import shutil

    from cryptography.fernet import Fernet

    shutil.copytree(template, dest)
    cfg = dest / "airflow.cfg"
    text = cfg.read_text().replace(str(template), str(dest))
    if new_fernet_key:
        lines = [f"fernet_key = {Fernet.generate_key().decode()}"
                 if ln.startswith("fernet_key =") else ln for ln in text.splitlines()]
        text = "\n".join(lines) + "\n"
    cfg.write_text(text)
    return dest


@pytest.fixture(scope="session")
def airflow_templates(airflow_bin: str, tmp_path_factory: pytest.TempPathFactory
                      ) -> dict[str, Path]:
    """Two migrated SQLite homes made once per session: ``empty`` and ``src`` (with a JSON
    variable with a description, a unicode variable, a connection with a password, a pool)."""
    base = tmp_path_factory.mktemp("airflow-templates")
    homes = {"empty": base / "empty", "src": base / "src"}
    for home in homes.values():
        home.mkdir()
    airflow_run(airflow_bin, homes["empty"], ["db", "migrate"])
    airflow_run(airflow_bin, homes["src"], ["db", "migrate"])
    src = homes["src"]
    airflow_run(airflow_bin, src, ["variables", "set", "--description", "a JSON value", "cfg",
                                   '{"a": [1, 2]}'])
    airflow_run(airflow_bin, src, ["variables", "set", "plain", "hello ✓"])
    airflow_run(airflow_bin, src, ["connections", "add", "warehouse", "--conn-uri",
                                   f"postgresql://etl:{AIRFLOW_CONN_SECRET}@db.internal:5432/"
                                   "dwh?sslmode=require"])
    airflow_run(airflow_bin, src, ["pools", "set", "etl", "7", "ETL pool"])
    return homes
