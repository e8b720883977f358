"""Source snapshots are ordinary restic snapshots: restic checks them and dumps the export."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support.cli import run_cli
from support.tools import run_restic


def test_restic_checks_and_dumps_a_sqlite_source_snapshot(tmp_path: Path,
                                                          restic_bin: str) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"v{i}",) for i in range(2000)])
    repo = tmp_path / "repo"
    assert run_cli(repo, "init").returncode == 0
    proc = run_cli(repo, "backup", f"sqlite://{db}", "--tag", "app")
    assert proc.returncode == 0, proc.stderr
    run_restic(repo, "check", "--read-data", password="secret-pw", restic_bin=restic_bin)
    dumped = run_restic(repo, "dump", "latest", "/sqlite/app.db", password="secret-pw",
                        restic_bin=restic_bin).stdout
    copy = tmp_path / "copy.db"
    copy.write_bytes(dumped)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (2000,)
