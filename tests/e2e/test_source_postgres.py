"""PostgreSQL through the CLI: pgbench round trips, deduplication of a second backup, parallel
directory dumps with roles, and every kind of bad input (one clear line, nothing left behind).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.cli import ok_stdout as _ok
from support.cli import one_line_error, repo, run_cli
from support.sources import (
    PG_BASE,
    db_tools,
    leftover_temp,
    pg,
    pg_fingerprint,
    processes_matching,
    unique,
)

__all__ = ["db_tools", "pg", "repo"]  # fixtures


_one_line_error = functools.partial(one_line_error, exit_code=1)






def _snapshots(repo: Path) -> list[dict[str, Any]]:
    return list(json.loads(_ok(run_cli(repo, "snapshots", "--json"))))


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture
def dbs(pg: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """Names to use for databases; all of them are dropped afterwards."""
    names: list[str] = []
    yield names
    for n in names:
        pg.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')


def _pgbench(db: str, *args: str) -> None:
    subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", *args, db], check=True,
                   capture_output=True, timeout=300)


@pytest.mark.slow
def test_pgbench_scale5_round_trip_and_unchanged_second_backup_dedups(
        pg: psycopg.Connection[Any], dbs: list[str], repo: Path, db_tools: dict[str, str]
) -> None:
    db, copy = unique("e2e_bench"), unique("e2e_bench_copy")
    dbs += [db, copy]
    pg.execute(f'CREATE DATABASE "{db}"')
    _pgbench(db, "-i", "-s", "5", "-q")
    original = pg_fingerprint(db)
    assert original["public.pgbench_accounts"][0] == 500_000

    empty = _du(repo)
    started = time.monotonic()
    out = _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}", "--tag", "pg"))
    first_seconds = time.monotonic() - started
    assert "snapshot" in out
    first = _du(repo) - empty
    _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}", "--tag", "pg"))
    second = _du(repo) - empty - first
    assert second < 0.05 * first, (first, second)
    print(f"\npgbench scale 5: first backup {first} bytes in {first_seconds:.1f}s, "
          f"unchanged second backup +{second} bytes ({100 * second / first:.2f}%)")

    snaps = _snapshots(repo)
    meta = snaps[0]["airflow_backup"]
    assert meta["source"]["tables"][f"{db}/public.pgbench_accounts"]["rows"] == 500_000
    assert meta["source"]["server_version"] and meta["source"]["tool_version"]
    assert meta["validation"]["header_and_trailer"] == [db]

    # change the database, then restore the first snapshot as a new database
    _pgbench(db, "-t", "300", "-c", "2")
    pg.execute(f'ALTER DATABASE "{db}" RENAME TO "{db}_x"')
    dbs.append(f"{db}_x")
    assert pg_fingerprint(f"{db}_x") != original
    out = _ok(run_cli(repo, "restore", snaps[0]["id"], "--target", f"{PG_BASE}/{copy}"))
    assert "pgbench_accounts: 500000 rows, rows+checksum match" in out
    assert pg_fingerprint(copy) == original

    # same name as the original, which no longer exists: created again
    _ok(run_cli(repo, "restore", "latest", "--tag", "pg", "--target", f"{PG_BASE}/{db}"))
    assert pg_fingerprint(db) == original


def test_custom_format_is_listed_by_pg_restore_and_restores(
        pg: psycopg.Connection[Any], dbs: list[str], repo: Path, db_tools: dict[str, str]
) -> None:
    db, copy = unique("e2e_custom"), unique("e2e_custom_copy")
    dbs += [db, copy]
    pg.execute(f'CREATE DATABASE "{db}"')
    _pgbench(db, "-i", "-s", "1", "-q")
    original = pg_fingerprint(db)
    _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}?format=custom"))
    meta = _snapshots(repo)[0]["airflow_backup"]
    assert meta["validation"]["pg_restore_list"][db]["table_data_entries"] == 4
    _ok(run_cli(repo, "restore", "latest", "--target", f"{PG_BASE}/{copy}"))
    assert pg_fingerprint(copy) == original
    _pgbench(copy, "-t", "100")
    _ok(run_cli(repo, "restore", "latest", "--target", f"{PG_BASE}/{copy}", "--clean"))
    assert pg_fingerprint(copy) == original


def test_directory_format_with_parallel_jobs_and_roles(
        pg: psycopg.Connection[Any], dbs: list[str], repo: Path, db_tools: dict[str, str]
) -> None:
    db, copy = unique("e2e_dir"), unique("e2e_dir_copy")
    dbs += [db, copy]
    role = unique("abk_role")
    pg.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        pg.execute(f'CREATE DATABASE "{db}" OWNER "{role}"')
        _pgbench(db, "-i", "-s", "1", "-q")
        original = pg_fingerprint(db)
        url = f"{PG_BASE}/{db}?format=directory&jobs=2&globals=true"
        _ok(run_cli(repo, "backup", url, "--tag", "dir"))
        listing = _ok(run_cli(repo, "ls", "latest"))
        assert f"/postgresql/{db}.dir/toc.dat" in listing
        assert "/postgresql/globals.sql" in listing
        globals_sql = _ok(run_cli(repo, "dump", "latest", "/postgresql/globals.sql"))
        assert f'CREATE ROLE "{role}"' in globals_sql or f"CREATE ROLE {role}" in globals_sql
        _ok(run_cli(repo, "restore", "latest", "--target",
                    f"{PG_BASE}/{copy}?format=directory&jobs=2"))
        assert pg_fingerprint(copy) == original
    finally:
        for n in (copy, db):
            pg.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        pg.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_existing_target_needs_clean_and_clean_replaces_it(
        pg: psycopg.Connection[Any], dbs: list[str], repo: Path, db_tools: dict[str, str]
) -> None:
    db = unique("e2e_exist")
    dbs.append(db)
    pg.execute(f'CREATE DATABASE "{db}"')
    _pgbench(db, "-i", "-s", "1", "-q")
    original = pg_fingerprint(db)
    _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}"))
    _pgbench(db, "-t", "200")
    changed = pg_fingerprint(db)
    line = _one_line_error(run_cli(repo, "restore", "latest", "--target", f"{PG_BASE}/{db}"))
    assert "already exists" in line and "--clean" in line
    assert pg_fingerprint(db) == changed
    _ok(run_cli(repo, "restore", "latest", "--target", f"{PG_BASE}/{db}", "--clean"))
    assert pg_fingerprint(db) == original


def test_unreachable_server_and_unknown_role_fail_cleanly(repo: Path,
                                                          db_tools: dict[str, str]) -> None:
    line = _one_line_error(run_cli(repo, "backup", "postgresql://postgres@127.0.0.1:1/db"))
    assert "unavailable" in line and "127.0.0.1:1" in line
    line = _one_line_error(run_cli(repo, "backup",
                                   "postgresql://no_such_role@127.0.0.1:5432/postgres"))
    assert "credentials rejected" in line
    assert _snapshots(repo) == []


def test_password_in_url_is_refused_and_never_echoed(repo: Path) -> None:
    line = _one_line_error(run_cli(repo, "backup",
                                   "postgresql://postgres:hunter2-xyz@127.0.0.1:5432/postgres"))
    assert "AIRFLOW_BACKUP_SOURCE_PASSWORD" in line
    assert "hunter2-xyz" not in line


def test_missing_pg_dump_is_one_clear_line(repo: Path, tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    proc = run_cli(repo, "backup", f"{PG_BASE}/postgres", env={"PATH": str(empty_bin)})
    line = _one_line_error(proc)
    assert "pg_dump" in line and "not found" in line
    assert _snapshots(repo) == []


@pytest.mark.slow
def test_dump_killed_half_way_leaves_no_snapshot_temp_files_or_processes(
        pg: psycopg.Connection[Any], dbs: list[str], repo: Path, tmp_path: Path,
        db_tools: dict[str, str]) -> None:
    db = unique("e2e_kill")
    dbs.append(db)
    pg.execute(f'CREATE DATABASE "{db}"')
    _pgbench(db, "-i", "-s", "5", "-q")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update({"AIRFLOW_BACKUP_PASSWORD": "secret-pw", "TMPDIR": str(tmp)})
    cli = subprocess.Popen([sys.executable, "-m", "airflow_backup.cli", "-r", str(repo),
                            "backup", f"{PG_BASE}/{db}?format=directory&jobs=2"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = 0
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline and cli.poll() is None:
        copying = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                             "application_name = 'pg_dump' AND query LIKE 'COPY%%'",
                             (db,)).fetchone()
        if copying and copying[0]:
            # Mid-COPY: drop every pg_dump connection (leader and workers), so the dump
            # cannot finish whichever table a worker had just completed.
            rows = pg.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                              "application_name = 'pg_dump'", (db,)).fetchall()
            for (pid,) in rows:
                pg.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed += 1
        time.sleep(0.02)
    out, err = cli.communicate(timeout=120)
    assert killed, "the dump finished before it could be interrupted"
    assert cli.returncode == 1, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "pg_dump" in lines[0], lines
    assert _snapshots(repo) == []
    assert leftover_temp(tmp) == []
    assert processes_matching("pg_dump --snapshot") == []
    assert pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                      "application_name IN ('pg_dump', 'airflow-backup')",
                      (db,)).fetchone() == (0,)


def test_owner_false_restores_a_plain_dump_whose_roles_are_gone(
        repo: Path, pg: psycopg.Connection[Any], dbs: list[str],
        db_tools: dict[str, str]) -> None:
    """``?owner=false`` on a plain dump leaves out pg_dump's OWNER TO / GRANT / REVOKE lines
    (as pg_restore --no-owner --no-privileges does) — never COPY data or a function body
    that looks like one; without it, the missing role is a restore error, not "credentials
    rejected"."""
    db, owner, reader = unique("own"), unique("alice"), unique("bob")
    dbs += [db, f"{db}_r", f"{db}_x"]
    pg.execute(f'CREATE ROLE "{owner}"')
    pg.execute(f'CREATE ROLE "{reader}"')
    try:
        pg.execute(f'CREATE DATABASE "{db}"')
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db,
                             autocommit=True) as c:
            c.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
            c.execute("INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 50) g")
            c.execute("CREATE TABLE looks (body text)")
            c.execute("INSERT INTO looks VALUES ('GRANT ALL ON t TO nobody;'), "
                      "('ALTER TABLE t OWNER TO nobody;')")
            c.execute("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n"
                      "GRANT SELECT ON t TO PUBLIC;\nEND\n$$")
            c.execute(f'ALTER TABLE t OWNER TO "{owner}"')
            c.execute(f'GRANT SELECT ON t TO "{reader}"')
        _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}", "--tag", "own"))
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db,
                             autocommit=True) as c:
            c.execute(f'REASSIGN OWNED BY "{owner}" TO postgres')
            c.execute(f'DROP OWNED BY "{owner}", "{reader}"')
    finally:
        pg.execute(f'DROP ROLE IF EXISTS "{owner}"')
        pg.execute(f'DROP ROLE IF EXISTS "{reader}"')
    line = _one_line_error(run_cli(repo, "restore", "latest", "--tag", "own", "--target",
                                   f"{PG_BASE}/{db}_x"))
    assert f'role "{owner}" does not exist' in line and "credentials" not in line, line
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "own", "--target",
                      f"{PG_BASE}/{db}_r?owner=false"))
    assert "match" in out
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=f"{db}_r") as c:
        assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 't'"
                         ).fetchone() == ("postgres",)
        assert sorted(r[0] for r in c.execute("SELECT body FROM looks")) == [
            "ALTER TABLE t OWNER TO nobody;", "GRANT ALL ON t TO nobody;"]
        body = c.execute("SELECT prosrc FROM pg_proc WHERE proname = 'f'").fetchone()
        assert body is not None and "\nGRANT SELECT ON t TO PUBLIC;\n" in body[0]


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_checks_do_not_depend_on_column_order_session_settings_or_encoding(
        fmt: str, pg: psycopg.Connection[Any], repo: Path, dbs: list[str],
        db_tools: dict[str, str]) -> None:
    """pg_dump gives an inheritance child its parent's columns first, ALTER DATABASE … SET
    timezone changes how timestamptz prints, and a LATIN1 database restored into a UTF8 one
    holds the same text in other bytes: none of that is a difference in the data."""
    db = unique("pg_odd")
    dbs += [db, db + "_copy"]
    pg.execute(f"CREATE DATABASE \"{db}\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
               "TEMPLATE template0")
    pg.execute(f"ALTER DATABASE \"{db}\" SET timezone = 'Asia/Tokyo'")
    with psycopg.connect(f"{PG_BASE}/{db}", autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (a int, b text)")
        conn.execute("CREATE TABLE child (c timestamptz, a int, b text)")
        conn.execute("ALTER TABLE child INHERIT parent")
        conn.execute("INSERT INTO parent VALUES (1, 'café'), (2, NULL)")
        conn.execute("INSERT INTO child VALUES ('2024-03-01 12:00+00', 3, 'crème'), "
                     "(NULL, 4, 'NULL')")
        conn.execute("CREATE TABLE money_and_floats (m money, f float8, i interval)")
        conn.execute("INSERT INTO money_and_floats VALUES (12.34, 0.1, '-3 mons 2 days')")
    url = f"{PG_BASE}/{db}" + ("?format=custom" if fmt == "custom" else "")
    _ok(run_cli(repo, "backup", url, "--tag", "odd"))
    assert _snapshots(repo)[0]["airflow_backup"]["source"]["stats_version"] == 2
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "odd", "--target",
                      f"{PG_BASE}/{db}_copy"))
    assert "public.child: 2 rows, rows+checksum match" in out
    assert "public.parent: 2 rows, rows+checksum match" in out

    def content(name: str) -> list[Any]:
        with psycopg.connect(f"{PG_BASE}/{name}") as conn:
            return [sorted(conn.execute(q).fetchall(), key=repr) for q in (
                "SELECT a, b FROM ONLY parent", "SELECT a, b, c FROM child",
                "SELECT m::numeric, f, i FROM money_and_floats")]

    assert content(db + "_copy") == content(db)
    # a drill of such a database passes (it restores into a scratch database the same way)
    _ok(run_cli(repo, "restore", "latest", "--tag", "odd", "--target",
                f"{PG_BASE}/{db}", "--clean"))


def test_database_properties_come_back_with_a_new_database(
        pg: psycopg.Connection[Any], repo: Path, dbs: list[str],
        db_tools: dict[str, str]) -> None:
    db, role, reader = unique("pg_props"), unique("abk_owner"), unique("abk_reader")
    dbs += [db, db + "_copy", db + "_clean"]
    for r in (role, reader):
        pg.execute(f'CREATE ROLE "{r}"')
    try:
        pg.execute(f"CREATE DATABASE \"{db}\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                   f"TEMPLATE template0 OWNER \"{role}\"")
        pg.execute(f"ALTER DATABASE \"{db}\" SET timezone = 'Asia/Tokyo'")
        pg.execute(f"ALTER DATABASE \"{db}\" SET work_mem = '12MB'")
        pg.execute(f"COMMENT ON DATABASE \"{db}\" IS 'the sales ledger'")
        pg.execute(f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC')
        pg.execute(f'GRANT CONNECT ON DATABASE "{db}" TO "{reader}"')
        with psycopg.connect(f"{PG_BASE}/{db}", autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x text)")
            conn.execute("INSERT INTO t VALUES ('é')")

        def props(name: str) -> tuple[Any, ...]:
            return tuple(pg.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, pg_get_userbyid(datdba), "
                "datacl::text, shobj_description(oid, 'pg_database'), (SELECT array_agg(c "
                "ORDER BY c) FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE "
                "s.setdatabase = d.oid AND s.setrole = 0) FROM pg_database d WHERE datname = %s",
                (name,)).fetchone() or ())

        original = props(db)
        _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}", "--tag", "props"))
        out = _ok(run_cli(repo, "restore", "latest", "--tag", "props", "--target",
                          f"{PG_BASE}/{db}_copy"))
        assert "note:" not in out
        assert props(db + "_copy") == original
        # --clean of a plain dump swaps in a new database: it gets them too
        pg.execute(f'ALTER DATABASE "{db}" RESET work_mem')
        pg.execute(f'COMMENT ON DATABASE "{db}" IS NULL')
        _ok(run_cli(repo, "restore", "latest", "--tag", "props", "--target",
                    f"{PG_BASE}/{db}", "--clean"))
        assert props(db) == original
        # where the owner role does not exist, the restore says so and still succeeds
        for name in (db, db + "_copy"):
            pg.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        pg.execute(f'DROP ROLE "{reader}"')
        out = _ok(run_cli(repo, "restore", "latest", "--tag", "props", "--target",
                          f"{PG_BASE}/{db}_clean"))
        assert f"note: privileges of role {reader}: no such role here" in out
    finally:
        for name in dbs:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for r in (role, reader):
            pg.execute(f'DROP ROLE IF EXISTS "{r}"')


def test_a_failed_forced_plain_restore_with_large_objects_leaves_nothing(
        repo: Path, pg: psycopg.Connection[Any], dbs: list[str],
        db_tools: dict[str, str]) -> None:
    """pg_dump puts the large objects' data between its own BEGIN and COMMIT; that COMMIT
    must not end psql's single transaction, or a later failure leaves half a restore."""
    db, target = unique("lob"), unique("lob_target")
    dbs += [db, target]
    pg.execute(f'CREATE DATABASE "{db}"')
    with psycopg.connect(f"{PG_BASE}/{db}", autocommit=True) as c:
        c.execute("CREATE TABLE docs (id int PRIMARY KEY, body oid, note text)")
        c.execute("INSERT INTO docs VALUES (1, lo_from_bytea(0, 'large object one'), "
                  "'BEGIN;'), (2, lo_from_bytea(0, 'two'), 'COMMIT;')")
    _ok(run_cli(repo, "backup", f"{PG_BASE}/{db}", "--tag", "lob"))
    # The target already has a relation named like the dump's primary key: the restore
    # fails at the constraint, after the tables and the large objects.
    pg.execute(f'CREATE DATABASE "{target}"')
    with psycopg.connect(f"{PG_BASE}/{target}", autocommit=True) as c:
        c.execute("CREATE TABLE docs_pkey (x int)")
    line = _one_line_error(run_cli(repo, "restore", "latest", "--tag", "lob", "--target",
                                   f"{PG_BASE}/{target}", "--force"))
    assert "docs_pkey" in line, line
    with psycopg.connect(f"{PG_BASE}/{target}") as c:
        assert c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
        assert c.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND "
                         "relnamespace = 'public'::regnamespace").fetchall() == [("docs_pkey",)]
    # and a restore that can succeed brings the large objects and the look-alike rows back
    _ok(run_cli(repo, "restore", "latest", "--tag", "lob", "--target", f"{PG_BASE}/{db}",
                "--clean"))
    with psycopg.connect(f"{PG_BASE}/{db}") as c:
        assert c.execute("SELECT id, lo_get(body), note FROM docs ORDER BY id").fetchall() == [
            (1, b"large object one", "BEGIN;"), (2, b"two", "COMMIT;")]


@pytest.mark.parametrize("fmt", ["plain", "custom", "directory"])
def test_failed_restores_leave_the_target_as_it_was_in_every_format(
        fmt: str, repo: Path, pg: psycopg.Connection[Any], dbs: list[str],
        db_tools: dict[str, str]) -> None:
    """--clean replays into a staging database and swaps only after the replay and the
    checks; --force restores in one transaction, a directory dump included."""
    db, role, other = unique("keep"), unique("gone"), unique("keep_other")
    dbs += [db, other]
    pg.execute(f'CREATE ROLE "{role}"')
    pg.execute(f'CREATE DATABASE "{db}"')
    with psycopg.connect(f"{PG_BASE}/{db}", autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
        c.execute(f'ALTER TABLE t OWNER TO "{role}"')
    url = f"{PG_BASE}/{db}" + ("" if fmt == "plain" else f"?format={fmt}")
    _ok(run_cli(repo, "backup", url, "--tag", "keep"))
    with psycopg.connect(f"{PG_BASE}/{db}", autocommit=True) as c:
        c.execute(f'REASSIGN OWNED BY "{role}" TO postgres')
        c.execute("INSERT INTO t VALUES (1000, 'written after the backup')")
    pg.execute(f'DROP ROLE "{role}"')

    def state(name: str) -> Any:
        with psycopg.connect(f"{PG_BASE}/{name}") as c:
            return c.execute("SELECT count(*), max(id) FROM t").fetchone()

    before = state(db)
    line = _one_line_error(run_cli(repo, "restore", "latest", "--tag", "keep", "--target",
                                   f"{PG_BASE}/{db}", "--clean"))
    assert "does not exist" in line, line
    assert state(db) == before == (101, 1000)
    assert pg.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                      (f"{db}%abk%",)).fetchall() == []

    # --force into a database where the dump's primary key name is taken: nothing of the
    # dump stays behind, not even with a directory dump.
    pg.execute(f'CREATE DATABASE "{other}"')
    with psycopg.connect(f"{PG_BASE}/{other}", autocommit=True) as c:
        c.execute("CREATE TABLE t_pkey (x int)")
    line = _one_line_error(run_cli(repo, "restore", "latest", "--tag", "keep", "--target",
                                   f"{PG_BASE}/{other}?owner=false", "--force"))
    assert "t_pkey" in line, line
    with psycopg.connect(f"{PG_BASE}/{other}") as c:
        assert c.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace "
                         "= 'public'::regnamespace").fetchall() == [("t_pkey",)]
