"""MariaDB restores as a DBA expects them, through the CLI against the real server: a failed
replay leaves the target as it was (staging database, swap only after the checks), ``--force``
never replaces a same-named table, system-versioned tables keep their history, and the
recorded counts are those of the dump's own snapshot even with a writer running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import ok_stdout as _ok
from support.cli import one_line_error, repo, run_cli
from support.sources import db_tools, maria, my_fingerprint, unique

__all__ = ["db_tools", "maria", "repo"]  # fixtures

BASE = "mysql://root@127.0.0.1:3306"


@pytest.fixture
def names(maria: Any) -> Iterator[list[str]]:
    """Databases a test creates (by name); dropped after, with any staging leftovers."""
    made: list[str] = []
    yield made
    with maria.cursor() as cur:
        for db in made:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")


def _schema(maria: Any, db: str) -> dict[str, Any]:
    """Everything a restore must bring back or leave alone: rows of every table (with the
    history of system-versioned ones), and the views, triggers, routines and events."""
    out: dict[str, Any] = {"rows": my_fingerprint(db)}
    with maria.cursor() as cur:
        for kind, query in (
                ("views", "SELECT table_name FROM information_schema.views"
                          " WHERE table_schema = %s"),
                ("triggers", "SELECT trigger_name, action_statement FROM "
                             "information_schema.triggers WHERE trigger_schema = %s"),
                ("routines", "SELECT routine_name, routine_definition FROM "
                             "information_schema.routines WHERE routine_schema = %s"),
                ("events", "SELECT event_name, status FROM information_schema.events "
                           "WHERE event_schema = %s")):
            cur.execute(query + " ORDER BY 1", (db,))
            out[kind] = cur.fetchall()
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_type = 'SYSTEM VERSIONED'", (db,))
        for (table,) in cur.fetchall():
            cur.execute(f"SELECT * FROM `{db}`.`{table}` FOR SYSTEM_TIME ALL")
            out[f"history:{table}"] = sorted(repr(r) for r in cur.fetchall())
    return out


def _leftovers(maria: Any) -> list[str]:
    with maria.cursor() as cur:
        cur.execute("SELECT schema_name FROM information_schema.schemata "
                    "WHERE schema_name LIKE '%%\\_abk\\_%%'")
        return [str(r[0]) for r in cur.fetchall()]


def _shop(maria: Any, db: str, blob_mib: int = 0) -> None:
    """A database with every kind of object, a system-versioned table with 4 versions, and
    optionally one large BLOB."""
    with maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute("CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(12,2), "
                    "payload LONGBLOB)")
        cur.execute("INSERT INTO orders SELECT seq, seq * 0.5, NULL FROM seq_1_to_500")
        if blob_mib:
            cur.execute("UPDATE orders SET payload = RANDOM_BYTES(1024) WHERE id = 1")
            cur.execute(f"UPDATE orders SET payload = REPEAT(payload, {blob_mib * 1024}) "
                        "WHERE id = 1")
        cur.execute("CREATE TABLE audit (n INT) ")
        cur.execute("CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW "
                    "INSERT INTO audit VALUES (NEW.id)")
        cur.execute("CREATE TABLE prices (sku INT PRIMARY KEY, price INT) "
                    "WITH SYSTEM VERSIONING")
        cur.execute("INSERT INTO prices VALUES (1, 10)")
        for price in (11, 12, 13):
            cur.execute("UPDATE prices SET price = %s WHERE sku = 1", (price,))
        cur.execute("CREATE VIEW big AS SELECT id, total FROM orders WHERE total > 100")
        cur.execute("CREATE VIEW bigger AS SELECT id FROM big WHERE total > 200")
        cur.execute("CREATE PROCEDURE add_order(i INT) INSERT INTO orders VALUES (i, 0, NULL)")
        cur.execute("CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x")
        cur.execute("CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO "
                    "DELETE FROM audit")


def _change(maria: Any, db: str) -> None:
    """What happened to the live database after the backup."""
    with maria.cursor() as cur:
        cur.execute(f"USE `{db}`")
        cur.execute("CALL add_order(100000)")
        cur.execute("CREATE TABLE added_later (x INT)")
        cur.execute("UPDATE prices SET price = 99")


def test_system_versioned_history_is_kept_and_counted(repo: Path, maria: Any,
                                                      names: list[str],
                                                      db_tools: dict[str, str]) -> None:
    db = unique("abk_hist")
    names += [db, db + "_copy"]
    _shop(maria, db)
    original = _schema(maria, db)
    assert len(original["history:prices"]) == 4
    _ok(run_cli(repo, "backup", f"{BASE}/{db}", "--tag", "hist"))
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "hist", "--target",
                      f"{BASE}/{db}_copy"))
    assert "prices: 4 rows, rows+checksum match" in out
    assert _schema(maria, db + "_copy") == original


def test_clean_restore_swaps_only_after_replay_and_checks(repo: Path, maria: Any,
                                                          names: list[str],
                                                          db_tools: dict[str, str]) -> None:
    db = unique("abk_safe")
    names += [db, db + "_new"]
    _shop(maria, db, blob_mib=10)  # dumped with --hex-blob: one INSERT of over 20 MiB
    original = _schema(maria, db)
    _ok(run_cli(repo, "backup", f"{BASE}/{db}", "--tag", "safe"))
    _change(maria, db)
    changed = _schema(maria, db)
    assert changed != original

    # The server takes 16 MiB packets: the replay fails, in staging, and nothing is lost.
    for target, extra in ((db, ["--clean"]), (db, ["--force"]), (db + "_new", [])):
        line = one_line_error(run_cli(repo, "restore", "latest", "--tag", "safe",
                                      "--target", f"{BASE}/{target}", *extra), exit_code=1)
        assert "max_allowed_packet" in line, line
        assert _schema(maria, db) == changed
        assert _leftovers(maria) == []
    with maria.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s",
                    (db + "_new",))
        assert cur.fetchone() == (0,)

    with maria.cursor() as cur:
        cur.execute("SET GLOBAL max_allowed_packet = 64 * 1024 * 1024")
    try:
        _ok(run_cli(repo, "restore", "latest", "--tag", "safe", "--target",
                    f"{BASE}/{db}_new"))
        assert _schema(maria, db + "_new") == original
        out = _ok(run_cli(repo, "restore", "latest", "--tag", "safe", "--target",
                          f"{BASE}/{db}", "--clean"))
        assert "orders: 500 rows, rows+checksum match" in out
        assert _schema(maria, db) == original  # added_later is gone, the history is back
        assert _leftovers(maria) == []
        with maria.cursor() as cur:  # the trigger fires on the swapped-in table
            cur.execute(f"INSERT INTO `{db}`.orders VALUES (7777, 1, NULL)")
            cur.execute(f"SELECT COUNT(*) FROM `{db}`.audit WHERE n = 7777")
            assert cur.fetchone() == (1,)
    finally:
        with maria.cursor() as cur:
            cur.execute("SET GLOBAL max_allowed_packet = 16 * 1024 * 1024")


def test_force_adds_but_never_replaces(repo: Path, maria: Any, names: list[str],
                                       db_tools: dict[str, str]) -> None:
    db, other = unique("abk_force"), unique("abk_other")
    names += [db, other]
    _shop(maria, db)
    original = _schema(maria, db)
    _ok(run_cli(repo, "backup", f"{BASE}/{db}", "--tag", "force"))
    _change(maria, db)
    changed = _schema(maria, db)
    line = one_line_error(run_cli(repo, "restore", "latest", "--tag", "force", "--target",
                                  f"{BASE}/{db}", "--force"), exit_code=1)
    assert "already has" in line and "orders" in line and "--clean" in line
    assert _schema(maria, db) == changed and _leftovers(maria) == []

    with maria.cursor() as cur:  # a database holding other things takes the restore in
        cur.execute(f"CREATE DATABASE `{other}`")
        cur.execute(f"CREATE TABLE `{other}`.unrelated (x INT)")
        cur.execute(f"INSERT INTO `{other}`.unrelated VALUES (1), (2)")
    _ok(run_cli(repo, "restore", "latest", "--tag", "force", "--target", f"{BASE}/{other}",
                "--force"))
    merged = _schema(maria, other)
    assert merged["rows"].pop("unrelated")[0] == 2
    assert merged == original


def test_counts_are_those_of_the_dump_snapshot_under_a_writer(
        repo: Path, maria: Any, names: list[str], db_tools: dict[str, str]) -> None:
    db = unique("abk_busy")
    names += [db, db + "_copy"]
    with maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute(f"CREATE TABLE `{db}`.events (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "body VARCHAR(200))")
        cur.execute(f"INSERT INTO `{db}`.events (body) SELECT REPEAT('x', 200) "
                    "FROM seq_1_to_200000")
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True)
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO events (body) VALUES ('late')")
                writes += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        _ok(run_cli(repo, "backup", f"{BASE}/{db}", "--tag", "busy"))
    finally:
        stop.set()
        thread.join()
    assert writes > 50  # the writer really ran through the backup
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "busy", "--target",
                      f"{BASE}/{db}_copy"))
    assert "rows+checksum match" in out


def test_without_reload_privilege_counts_are_taken_just_before_and_say_so(
        repo: Path, maria: Any, names: list[str], db_tools: dict[str, str]) -> None:
    import json

    db, user = unique("abk_noreload"), "abk_noreload"
    names.append(db)
    _shop(maria, db)
    with maria.cursor() as cur:
        cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY 'pw-nr-1'")
        cur.execute(f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{db}`.* "
                    f"TO '{user}'@'%'")
    try:
        _ok(run_cli(repo, "backup", f"mysql://{user}@127.0.0.1:3306/{db}", "--tag", "nr",
                    env={"AIRFLOW_BACKUP_SOURCE_PASSWORD": "pw-nr-1"}))
    finally:
        with maria.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")
    source = json.loads(_ok(run_cli(repo, "snapshots", "--json")))[0]["airflow_backup"]["source"]
    assert source["tables_at"].startswith("just before the dump: FLUSH TABLES WITH READ LOCK")
    assert "RELOAD" in source["tables_at"]
    assert source["tables"][f"{db}/orders"]["rows"] == 500


def test_a_new_database_gets_the_source_character_set_and_collation(
        repo: Path, maria: Any, names: list[str], db_tools: dict[str, str]) -> None:
    db = unique("abk_latin")
    names += [db, db + "_copy"]
    with maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET latin1 COLLATE latin1_german1_ci")
        cur.execute(f"CREATE TABLE `{db}`.t (name VARCHAR(20))")
        cur.execute(f"INSERT INTO `{db}`.t VALUES ('Müller'), ('Straße')")
    _ok(run_cli(repo, "backup", f"{BASE}/{db}", "--tag", "latin"))
    _ok(run_cli(repo, "restore", "latest", "--tag", "latin", "--target", f"{BASE}/{db}_copy"))

    def defaults(name: str) -> Any:
        with maria.cursor() as cur:
            cur.execute("SELECT default_character_set_name, default_collation_name FROM "
                        "information_schema.schemata WHERE schema_name = %s", (name,))
            return cur.fetchone()

    assert defaults(db + "_copy") == defaults(db) == ("latin1", "latin1_german1_ci")
    assert _schema(maria, db + "_copy") == _schema(maria, db)
