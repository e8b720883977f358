"""One suite over every data source, against real servers (PostgreSQL, MariaDB, SQLite, a moto
S3 server and the Airflow CLI): round trip with an independent comparison, no secrets in the
snapshot, refusal of an existing target, and a failed export that leaves nothing behind.

Each source is a ``Case``: how to make data, change it after the backup, fingerprint the
original and the restored copy (without airflow_backup's own checksum code), and a URL that
cannot work.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import s3fs

from airflow_backup.errors import ConfigError, RestoreTargetExists, SourceError
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.sources import backup_source, restore_source
from airflow_backup.storage.registry import open_storage
from support.sources import (
    AIRFLOW_CONN_SECRET,
    PG_BASE,
    airflow_bin,
    airflow_run,
    airflow_state,
    airflow_templates,
    child_pids,
    clone_home,
    db_tools,
    leftover_temp,
    maria,
    moto_endpoint,
    my_fingerprint,
    pg,
    pg_fingerprint,
    sqlite_fingerprint,
    unique,
)

# fixtures used here
__all__ = ["airflow_bin", "airflow_templates", "db_tools", "maria", "moto_endpoint", "pg"]

Fingerprint = Callable[[], Any]


@dataclass
class Case:
    """One source under test."""

    kind: str
    url: str
    target: str
    original: Fingerprint
    restored: Fingerprint
    mutate: Callable[[], None]
    broken: str
    secret: str = ""
    prepare: Callable[[], None] = lambda: None
    teardown: list[Callable[[], None]] = field(default_factory=list)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(open_storage(str(tmp_path / "repo")), "pw", kdf=KdfParams(1024, 8, 1))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile (and child processes) at an empty directory we can inspect."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    monkeypatch.setenv("TMPDIR", str(path))
    return path


# ---- cases -----------------------------------------------------------------------------------


def _pg_case(pg: Any, monkeypatch: pytest.MonkeyPatch) -> Case:
    import psycopg

    db, target = unique("conf_pg"), unique("conf_pg_r")
    secret = "pg-secret-never-stored"
    monkeypatch.setenv("AIRFLOW_BACKUP_SOURCE_PASSWORD", secret)  # trust auth ignores it

    def sql(text: str) -> None:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db,
                             autocommit=True) as c:
            c.execute(text)

    def prepare() -> None:
        pg.execute(f'CREATE DATABASE "{db}"')
        subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-U", "postgres",
                        db], check=True, capture_output=True)
        sql("CREATE SCHEMA other; CREATE TABLE other.odd (id int primary key, t text, "
            "b bytea, j jsonb, n numeric(12,4)); INSERT INTO other.odd VALUES "
            "(1, 'ünïcode ✓', '\\x00ff', '{\"a\": [1, null]}', 1.5), "
            "(2, NULL, NULL, NULL, NULL); CREATE TABLE other.empty (x int)")

    case = Case("postgresql", f"{PG_BASE}/{db}", f"{PG_BASE}/{target}",
                lambda: pg_fingerprint(db), lambda: pg_fingerprint(target),
                lambda: sql("DELETE FROM pgbench_accounts WHERE aid % 7 = 0; "
                            "DROP TABLE other.odd"),
                "postgresql://postgres@127.0.0.1:1/nowhere", secret, prepare)
    case.teardown += [lambda n=n: pg.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
                      for n in (db, target)]
    return case


def _my_case(maria: Any, monkeypatch: pytest.MonkeyPatch) -> Case:
    db, target = unique("conf_my"), unique("conf_my_r")
    secret = "My-Secret-pw-42"
    monkeypatch.setenv("AIRFLOW_BACKUP_SOURCE_PASSWORD", secret)

    def prepare() -> None:
        with maria.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'abk_test'@'%%' IDENTIFIED BY %s", (secret,))
            cur.execute("ALTER USER 'abk_test'@'%%' IDENTIFIED BY %s", (secret,))
            cur.execute("GRANT ALL ON *.* TO 'abk_test'@'%'")
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"USE `{db}`")
            cur.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY AUTO_INCREMENT, "
                        "name VARCHAR(40), price DECIMAL(10,2), data BLOB, at DATETIME(6))")
            cur.execute(f"INSERT INTO `{db}`.items (name, price, data, at) SELECT "
                        "CONCAT('ïtem', seq), seq * 1.25, UNHEX(MD5(seq)), NOW(6) "
                        "FROM seq_1_to_5000")
            cur.execute(f"INSERT INTO `{db}`.items (name) VALUES (NULL)")
            cur.execute(f"CREATE TABLE `{db}`.empty_t (x INT)")
            cur.execute("CREATE TRIGGER trg BEFORE INSERT ON items FOR EACH ROW "
                        "SET NEW.name = COALESCE(NEW.name, 'unnamed')")

    def mutate() -> None:
        with maria.cursor() as cur:
            cur.execute(f"DELETE FROM `{db}`.items WHERE id % 3 = 0")

    def drop() -> None:
        with maria.cursor() as cur:
            for n in (db, target):
                cur.execute(f"DROP DATABASE IF EXISTS `{n}`")

    base = "mysql://abk_test@127.0.0.1:3306"
    case = Case("mysql", f"{base}/{db}", f"{base}/{target}", lambda: my_fingerprint(db),
                lambda: my_fingerprint(target), mutate, "mysql://abk_test@127.0.0.1:1/x", secret,
                prepare)
    case.teardown.append(drop)
    return case


def _sqlite_case(tmp_path: Path) -> Case:
    src, dst = tmp_path / "app.db", tmp_path / "restored" / "app.db"

    def prepare() -> None:
        dst.parent.mkdir()
        conn = sqlite3.connect(src)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB, f REAL)")
        conn.executemany("INSERT INTO t (v, b, f) VALUES (?, ?, ?)",
                         [(f"v{i} ✓", os.urandom(16), i / 7) for i in range(3000)])
        conn.execute("CREATE TABLE empty (x)")
        conn.commit()
        conn.close()

    def mutate() -> None:
        with sqlite3.connect(src) as c:
            c.execute("DELETE FROM t WHERE id < 100")

    return Case("sqlite", f"sqlite://{src}", f"sqlite://{dst}", lambda: sqlite_fingerprint(src),
                lambda: sqlite_fingerprint(dst), mutate, f"sqlite://{tmp_path}/missing.db",
                prepare=prepare)


def _table_case(pg: Any) -> Case:
    import psycopg

    db = unique("conf_tbl")

    def sql(text: str) -> None:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db,
                             autocommit=True) as c:
            c.execute(text)

    def prepare() -> None:
        pg.execute(f'CREATE DATABASE "{db}"')
        sql("CREATE TABLE events (id bigserial primary key, kind text, amount numeric(10,2), "
            "at timestamptz default now(), ok boolean, raw bytea); INSERT INTO events "
            "(kind, amount, ok, raw) SELECT 'k' || g % 5, g / 4.0, g % 2 = 0, "
            "decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g; "
            "INSERT INTO events (kind) VALUES (NULL)")

    case = Case("table", f"table+{PG_BASE}/{db}?table=events&watermark=id",
                f"table+{PG_BASE}/{db}?table=events_restored",
                lambda: pg_fingerprint(db)["public.events"],
                lambda: pg_fingerprint(db)["public.events_restored"],
                lambda: sql("DELETE FROM events WHERE id < 10"),
                f"table+{PG_BASE}/{db}?table=no_such_table&watermark=id", prepare=prepare)
    case.teardown.append(lambda: pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    return case


def _s3_case(endpoint: str) -> Case:
    import hashlib

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    bucket = unique("conf-bkt").replace("_", "-")

    def prepare() -> None:
        fs.mkdir(bucket)
        for i in range(25):
            fs.pipe(f"{bucket}/data/d{i % 4}/o{i}.bin", os.urandom(500 + 3000 * i))
        fs.pipe(f"{bucket}/data/zero", b"")
        fs.pipe(f"{bucket}/data/ünï code.txt", "✓".encode())

    def listing(prefix: str) -> dict[str, str]:
        fs.invalidate_cache()
        return {p[len(f"{bucket}/{prefix}/"):]: hashlib.sha256(fs.cat(p)).hexdigest()
                for p in fs.find(f"{bucket}/{prefix}")}

    def mutate() -> None:
        fs.rm(f"{bucket}/data/d0", recursive=True)
        fs.pipe(f"{bucket}/data/d1/o1.bin", b"changed")

    q = f"?endpoint_url={endpoint}"
    return Case("object_store", f"s3://{bucket}/data{q}", f"s3://{bucket}/restored{q}",
                lambda: listing("data"), lambda: listing("restored"), mutate,
                f"s3://no-such-bucket-{bucket}/x{q}", prepare=prepare)


def _airflow_case(tmp_path: Path, airflow: str, templates: dict[str, Path]) -> Case:
    src, dst = tmp_path / "home-src", tmp_path / "home-dst"

    def prepare() -> None:
        clone_home(templates["src"], src)
        clone_home(templates["empty"], dst, new_fernet_key=True)

    return Case("airflow", f"airflow://{src}?airflow={airflow}",
                f"airflow://{dst}?airflow={airflow}",
                lambda: airflow_state(airflow, src, tmp_path),
                lambda: airflow_state(airflow, dst, tmp_path),
                lambda: airflow_run(airflow, src, ["variables", "delete", "plain"]),
                f"airflow://{tmp_path}/no-home?airflow={airflow}", AIRFLOW_CONN_SECRET, prepare)


DATABASE_KINDS = ["postgresql", "mysql", "sqlite", "table", "object_store"]
KINDS = [*DATABASE_KINDS, pytest.param("airflow", marks=pytest.mark.slow)]


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Case]:
    kind = request.param
    request.getfixturevalue("db_tools")
    if kind == "postgresql":
        c = _pg_case(request.getfixturevalue("pg"), monkeypatch)
    elif kind == "mysql":
        c = _my_case(request.getfixturevalue("maria"), monkeypatch)
    elif kind == "sqlite":
        c = _sqlite_case(tmp_path)
    elif kind == "table":
        c = _table_case(request.getfixturevalue("pg"))
    elif kind == "object_store":
        c = _s3_case(request.getfixturevalue("moto_endpoint"))
    else:
        c = _airflow_case(tmp_path, request.getfixturevalue("airflow_bin"),
                          request.getfixturevalue("airflow_templates"))
    yield c
    for fn in c.teardown:
        fn()


# ---- the suite -------------------------------------------------------------------------------


def test_round_trip_restores_identical_data(case: Case, repo: Repository) -> None:
    case.prepare()
    before = case.original()
    result = backup_source(repo, case.url, tags=["conf"])
    assert [s.id for s in repo.list_snapshots()] == [result.snapshot.id]
    meta = result.metadata
    assert meta["source"]["kind"] == case.kind
    assert "://" in meta["source"]["url"]
    raw = json.dumps(repo.load_raw_json(_snapshot_handle(result.snapshot.id)))
    if case.secret:
        assert case.secret not in raw
    assert meta["validation"], "the export was validated"

    case.mutate()
    assert case.original() != before, "the mutation must change the source"
    report = restore_source(repo, result.snapshot, case.target)
    assert report.checks and report.ok, report
    assert case.restored() == before


# Airflow targets merge by key instead: tests/e2e/test_source_airflow.py covers fail/skip/overwrite.
@pytest.mark.parametrize("case", DATABASE_KINDS, indirect=True)
def test_existing_target_is_refused(case: Case, repo: Repository) -> None:
    case.prepare()
    result = backup_source(repo, case.url)
    restore_source(repo, result.snapshot, case.target)
    after_first = case.restored()
    with pytest.raises(RestoreTargetExists):
        restore_source(repo, result.snapshot, case.target)
    assert case.restored() == after_first


def test_failed_export_leaves_no_snapshot_temp_files_or_children(
        case: Case, repo: Repository, private_tmp: Path) -> None:
    children_before = set(child_pids())  # session servers (moto) are ours too
    with pytest.raises((SourceError, ConfigError)) as info:
        backup_source(repo, case.broken)
    message = str(info.value)
    assert "\n" not in message and message
    if case.secret:
        assert case.secret not in message
    assert repo.list_snapshots() == []
    assert leftover_temp(private_tmp) == []
    assert set(child_pids()) <= children_before


def _snapshot_handle(snapshot_id: str) -> Any:
    from airflow_backup.storage.base import FileType, Handle

    return Handle(FileType.SNAPSHOT, snapshot_id)


def _forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a probe must not read, count, lock or dump the data")


#: What reads a source's data (counts, checksums, locks, dumps, listings, exports): the
#: store step's describe and export, never the export step's probe.
_READS_DATA = ("airflow_backup.sources.postgres.pg_table_stats",
               "airflow_backup.sources.mysql.MySQLSource.table_stats",
               "airflow_backup.sources.mysql.MySQLSource._start_dumps",
               "airflow_backup.sources.sqlite.sqlite_table_stats",
               "airflow_backup.sources.object_store.ObjectStoreSource._list",
               "airflow_backup.sources.airflow_metadata.AirflowMetadataSource._export")


def test_probe_checks_the_source_without_reading_its_data(
        case: Case, private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_backup.sources.registry import open_source

    case.prepare()
    children_before = set(child_pids())
    for target in _READS_DATA:
        monkeypatch.setattr(target, _forbidden)
    source = open_source(case.url)
    try:
        described = source.probe()
    finally:
        source.cleanup()
    assert described, "a probe describes what it found"
    if case.kind != "table":  # a table export's broken URL names a missing table: checked too
        broken = open_source(case.broken)
        with pytest.raises(SourceError) as info:
            try:
                broken.probe()
            finally:
                broken.cleanup()
        assert "\n" not in str(info.value)
    assert leftover_temp(private_tmp) == []
    assert set(child_pids()) <= children_before
