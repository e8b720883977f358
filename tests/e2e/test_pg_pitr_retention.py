"""WAL-aware retention and the WAL gap check on a real cluster (``pg forget``, ``pg check``).

A cluster of the test's own archives WAL into a repository through ``pg archive-wal``; three
base backups are taken with WAL switches and sentinel rows between them. ``pg forget
--keep-base 2 --prune`` must forget the oldest base backup and only the WAL before the
second one's start; then the real ``restic check --read-data`` is clean, ``pg check`` is
clean, and a point-in-time restore to a moment after the second base backup recovers
exactly the sentinel rows before it. Finally one archived segment in the middle is removed
with the plain ``forget ID`` and ``pg check`` must fail, naming that segment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_pg_pitr import (
    PASSWORD,
    _as_postgres,
    _cli,
    _connect,
    _env,
    _ids,
    _launcher,
    _mark,
    _recovered,
    _restic_check,
    _start_archiving,
    _tail,
    _wait_archived,
)

from support.pg_cluster import own_cluster


def _run(base: Path, repo_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as the server's OS user; never asserts the exit status."""
    return subprocess.run(_as_postgres(*_launcher(), "-r", str(repo_dir), *args),
                          env=_env(base), capture_output=True, text=True, timeout=600,
                          check=False)


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(doc, dict)
    return doc


def _basebackup(base: Path, repo_dir: Path, url: str) -> dict[str, Any]:
    return _last_json(_cli(base, repo_dir, "--json", "pg", "basebackup", "--dbname", url))


@pytest.mark.slow
def test_keep_two_base_backups_then_a_gap_is_found(tmp_path: Path) -> None:
    with own_cluster() as cluster:
        base, repo_dir = cluster.base, cluster.base / "repo"
        _cli(base, repo_dir, "init")
        _start_archiving(cluster, " ".join([*_launcher(), "-r", str(repo_dir), "pg",
                                            "archive-wal", "%p"]))
        with _connect(cluster.port) as conn:
            conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, at timestamptz)")
            conn.execute("CREATE TABLE filler (n int)")
            _mark(conn, 0)
            _wait_archived(conn)
            bb1 = _basebackup(base, repo_dir, cluster.url())
            _mark(conn, 1)
            _wait_archived(conn)
            bb2 = _basebackup(base, repo_dir, cluster.url())
            target = _mark(conn, 2)              # after the 2nd base backup
            _wait_archived(conn)
            _mark(conn, 3)
            for n in range(3):                   # segments between bb2 and bb3
                conn.execute("INSERT INTO filler VALUES (%s)", (n,))
                _wait_archived(conn)
            bb3 = _basebackup(base, repo_dir, cluster.url())
            _mark(conn, 4)
            _wait_archived(conn)

        before = _last_json(_cli(base, repo_dir, "--json", "pg", "check"))
        assert before["message_type"] == "pg_check" and before["ok"] is True, before
        assert before["recoverable_window"]["earliest"] == bb1["stop_time"]
        listed = _last_json(_cli(base, repo_dir, "--json", "pg", "list"))
        wal_before = {w["name"]: w["snapshot_id"] for w in listed["wal"]}

        # Dry run first: nothing changes.
        dry = _last_json(_cli(base, repo_dir, "--json", "pg", "forget", "--keep-base", "2",
                              "--dry-run"))
        assert dry["forget_base_backups"] == [bb1["snapshot_id"]] and dry["dry_run"] is True
        assert len(_last_json(_cli(base, repo_dir, "--json", "pg", "list"))["wal"]) \
            == len(wal_before)

        done = _last_json(_cli(base, repo_dir, "--json", "pg", "forget", "--keep-base", "2",
                               "--prune"))
        assert done["message_type"] == "pg_forget" and done["pruned"] is True
        assert done["forget_base_backups"] == [bb1["snapshot_id"]]
        assert done["keep_base_backups"] == [bb2["snapshot_id"], bb3["snapshot_id"]]
        forgotten = [w["name"] for w in done["forget_wal"]]
        assert forgotten, done
        # Only WAL before the second base backup's start segment (the .backup file of
        # the first base backup included); never a .history file.
        assert all(name[:24] < bb2["start_wal"] for name in forgotten), (forgotten, bb2)
        assert set(done["removed"]) == {bb1["snapshot_id"],
                                        *(w["snapshot_id"] for w in done["forget_wal"])}
        after = _last_json(_cli(base, repo_dir, "--json", "pg", "list"))
        left = {w["name"] for w in after["wal"]}
        assert left == set(wal_before) - set(forgotten)
        assert all(n >= bb2["start_wal"] for n in left if len(n) == 24)

        _restic_check(repo_dir, {**_env(base), "RESTIC_PASSWORD_FILE":
                                 str(_password_file(tmp_path))})
        checked = _last_json(_cli(base, repo_dir, "--json", "pg", "check"))
        assert checked["ok"] is True and checked["problems"] == [], checked
        assert checked["recoverable_window"]["earliest"] == bb2["stop_time"]
        assert [b["snapshot_id"] for b in checked["base_backups"]] == \
            [bb2["snapshot_id"], bb3["snapshot_id"]]

        # Point-in-time recovery to a moment after the 2nd base backup still works.
        restored_dir = base / "restored"
        restored = _last_json(_cli(base, repo_dir, "--json", "pg", "restore", "--target-dir",
                                   str(restored_dir), "--target-time", target,
                                   "--target-action", "promote"))
        assert restored["snapshot_id"] == bb2["snapshot_id"]
        with _recovered(base, restored_dir) as port:
            ids = _ids(port)
        assert ids == [0, 1, 2], (ids, _tail(base / "restored.log"))

        # A WAL snapshot in the middle (after bb2's WAL, before bb3's) removed by hand.
        middle = sorted(n for n in left if len(n) == 24 and n[:8] == "00000001"
                        and bb2["start_wal"] < n < bb3["start_wal"])
        assert len(middle) >= 3, middle
        victim = middle[len(middle) // 2]
        _cli(base, repo_dir, "forget", wal_before[victim])
        failed = _run(base, repo_dir, "pg", "check")
        assert failed.returncode == 1, (failed.stdout, failed.stderr)
        assert victim in failed.stderr and "gap" in failed.stderr, failed.stderr
        assert f"problem: gap in the WAL archive: {victim}" in failed.stdout
        as_json = _run(base, repo_dir, "--json", "pg", "check")
        assert as_json.returncode == 1
        doc = json.loads(as_json.stdout.strip().splitlines()[-1])
        assert doc["ok"] is False
        assert doc["gaps"] == [{"timeline": 1, "first": victim, "last": victim, "count": 1}]


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "restic-password"
    path.write_text(PASSWORD + "\n")
    return path
