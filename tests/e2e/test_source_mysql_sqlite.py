"""MariaDB and SQLite through the CLI: round trips, wrong credentials, and an SQLite database
backed up while another process writes to it.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import ok_stdout as _ok
from support.cli import one_line_error, repo, run_cli
from support.sources import db_tools, maria, my_fingerprint, sqlite_fingerprint, unique

__all__ = ["db_tools", "maria", "repo"]  # fixtures

USER, SECRET = "abk_e2e", "E2e-Secret-pw-7"


_one_line_error = functools.partial(one_line_error, exit_code=1)






@pytest.fixture
def shop(maria: Any) -> Iterator[str]:
    """A MariaDB database with a table, a view, a routine and an event; dropped after."""
    db = unique("e2e_shop")
    with maria.cursor() as cur:
        cur.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY %s", (SECRET,))
        cur.execute(f"ALTER USER '{USER}'@'%%' IDENTIFIED BY %s", (SECRET,))
        cur.execute(f"GRANT ALL ON *.* TO '{USER}'@'%'")
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute("CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer "
                    "VARCHAR(30), total DECIMAL(12,2), note TEXT, placed DATETIME)")
        cur.execute("INSERT INTO orders (customer, total, note, placed) SELECT "
                    "CONCAT('c', seq % 97), seq * 0.01, REPEAT('x', seq % 50), "
                    "'2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_20000")
        cur.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100")
        cur.execute("CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x")
        cur.execute("CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO "
                    "DELETE FROM orders WHERE id < 0")
    yield db
    with maria.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        cur.execute(f"DROP DATABASE IF EXISTS `{db}_copy`")


def test_mariadb_round_trip_with_routines_views_and_events(
        shop: str, repo: Path, maria: Any, db_tools: dict[str, str]) -> None:
    env = {"AIRFLOW_BACKUP_SOURCE_PASSWORD": SECRET}
    base = f"mysql://{USER}@127.0.0.1:3306"
    original = my_fingerprint(shop)
    _ok(run_cli(repo, "backup", f"{base}/{shop}", "--tag", "maria", env=env))
    snap = json.loads(_ok(run_cli(repo, "snapshots", "--json")))[0]
    assert SECRET not in json.dumps(snap)
    meta = snap["airflow_backup"]["source"]
    assert meta["tables"][f"{shop}/orders"]["rows"] == 20000
    assert "MariaDB" in meta["server_version"] or meta["server_version"]

    with maria.cursor() as cur:
        cur.execute(f"DELETE FROM `{shop}`.orders WHERE id % 2 = 0")
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "maria", "--target",
                      f"{base}/{shop}_copy", env=env))
    assert "orders: 20000 rows, rows+checksum match" in out
    assert my_fingerprint(f"{shop}_copy") == original
    with maria.cursor() as cur:
        cur.execute(f"SELECT `{shop}_copy`.twice(21)")
        assert cur.fetchone() == (42,)
        cur.execute(f"SELECT COUNT(*) FROM `{shop}_copy`.big_orders")
        assert cur.fetchone()[0] == 10000
        cur.execute("SELECT COUNT(*) FROM information_schema.events WHERE event_schema = %s",
                    (f"{shop}_copy",))
        assert cur.fetchone() == (1,)

    line = _one_line_error(run_cli(repo, "restore", "latest", "--target",
                                   f"{base}/{shop}_copy", env=env))
    assert "already exists" in line
    _ok(run_cli(repo, "restore", "latest", "--target", f"{base}/{shop}", "--clean", env=env))
    assert my_fingerprint(shop) == original


def test_mariadb_wrong_password_and_unreachable_server(shop: str, repo: Path,
                                                        db_tools: dict[str, str]) -> None:
    bad = {"AIRFLOW_BACKUP_SOURCE_PASSWORD": "not-the-password"}
    line = _one_line_error(run_cli(repo, "backup", f"mysql://{USER}@127.0.0.1:3306/{shop}",
                                   env=bad))
    assert "credentials rejected" in line and "not-the-password" not in line
    line = _one_line_error(run_cli(repo, "backup", f"mysql://{USER}@127.0.0.1:1/{shop}"))
    assert "unavailable" in line
    assert json.loads(_ok(run_cli(repo, "snapshots", "--json"))) == []


def test_mariadb_password_beyond_latin_1(maria: Any, repo: Path,
                                         db_tools: dict[str, str]) -> None:
    """pymysql encodes a str password as latin-1: a password with '€' used to fail the
    backup with an error quoting that character and its position."""
    user, secret, db = unique("abk_utf8")[:30], "Pässwörd-€-7", unique("e2e_utf8")
    with maria.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (secret,))
        cur.execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'%'")
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO `{db}`.t VALUES (1), (2)")
    try:
        result = run_cli(repo, "backup", f"mysql://{user}@127.0.0.1:3306/{db}",
                         env={"AIRFLOW_BACKUP_SOURCE_PASSWORD": secret})
        out = (result.stdout + result.stderr).decode("utf-8", "replace")
        assert result.returncode == 0, out
        assert "€" not in out
        assert len(json.loads(_ok(run_cli(repo, "snapshots", "--json")))) == 1
    finally:
        with maria.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")


_WRITER = textwrap.dedent("""
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
    if sys.argv[2] == "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # many small transactions, not many fsyncs
    conn.execute("CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, txn INTEGER, "
                 "amount INTEGER, memo TEXT)")
    print("ready", flush=True)
    txn = 0
    deadline = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < deadline:
        txn += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO ledger (txn, amount, memo) VALUES (?, ?, ?)",
                     (txn, 100, "x" * 400))
        conn.execute("INSERT INTO ledger (txn, amount, memo) VALUES (?, ?, ?)",
                     (txn, -100, "y" * 400))
        conn.execute("COMMIT")
    print(txn, flush=True)
""")


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite_backed_up_while_written_restores_consistent(
        journal: str, tmp_path: Path, repo: Path) -> None:
    db = tmp_path / "live.db"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), journal, "8"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        snapshots = []
        for _ in range(3):
            _ok(run_cli(repo, "backup", f"sqlite://{db}", "--tag", "live"))
            time.sleep(0.3)
        snapshots = json.loads(_ok(run_cli(repo, "snapshots", "--json")))
    finally:
        out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0
    assert int(out.strip()) > 0, "the writer committed transactions"
    for i, snap in enumerate(snapshots):
        target = tmp_path / f"restored-{i}.db"
        text = _ok(run_cli(repo, "restore", snap["id"], "--target", f"sqlite://{target}"))
        assert "rows+checksum match" in text
        conn = sqlite3.connect(target)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM "
                                       "ledger").fetchone()
            assert rows % 2 == 0 and total == 0, (rows, total)
            recorded = snap["airflow_backup"]["source"]["tables"]["ledger"]["rows"]
            assert rows == recorded
        finally:
            conn.close()
    assert len({s["airflow_backup"]["source"]["tables"]["ledger"]["rows"]
                for s in snapshots}) > 1, "the backups saw the database grow"


def test_sqlite_restore_swaps_atomically_and_keeps_the_old_file(tmp_path: Path,
                                                                repo: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"v{i}",) for i in range(500)])
    original = sqlite_fingerprint(db)
    _ok(run_cli(repo, "backup", f"sqlite://{db}"))
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM t WHERE id > 10")
    changed = sqlite_fingerprint(db)
    line = _one_line_error(run_cli(repo, "restore", "latest", "--target", f"sqlite://{db}"))
    assert "already exists" in line and "--force" in line
    _ok(run_cli(repo, "restore", "latest", "--target", f"sqlite://{db}", "--force"))
    assert sqlite_fingerprint(db) == original
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("app.db.before-restore-")]
    assert len(aside) == 1 and sqlite_fingerprint(aside[0]) == changed
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name and p not in aside]
