"""A backup's progress as restic shows it, through the real CLI: on a terminal (a pty) one
status line redrawn with files and bytes done, the totals of the scan ahead, the percentage
and an ETA; with ``--json`` restic's ``status`` messages on stdout before the summary; with
neither (cron, a pipe) and ``-q``, nothing but the result."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from support.cli import FAST_KDF, ok, repo, run_cli

__all__ = ["repo"]

FILES, SIZE = 40, 1 << 20


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(FILES):
        (data / f"f{i:02d}.bin").write_bytes(os.urandom(SIZE))
    return data


def test_json_status_messages_carry_the_scanned_totals(repo: Path, tmp_path: Path) -> None:
    data = _data(tmp_path)
    proc = ok(run_cli(repo, "--json", "backup", data, env={"RESTIC_PROGRESS_FPS": "100"}))
    messages = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    status = [m for m in messages if m["message_type"] == "status"]
    assert status, "status messages before the summary"
    assert messages[-1]["message_type"] == "summary"
    last = status[-1]
    assert {"seconds_elapsed", "total_files", "files_done", "total_bytes", "bytes_done",
            "error_count"} <= set(last)
    complete = [m for m in status if "percent_done" in m]
    assert complete, "the scan finished during the backup"
    assert complete[-1]["total_files"] == FILES and complete[-1]["total_bytes"] == FILES * SIZE
    assert all(0.0 <= m["percent_done"] <= 1.0 for m in complete)
    assert [m["bytes_done"] for m in status] == sorted(m["bytes_done"] for m in status)


def _on_a_terminal(repo: Path, *args: str) -> tuple[bytes, list[str]]:
    """Run the CLI with stderr on a pty; return its stdout and the status line's frames."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_BACKUP_",
                                                                       "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_PASSWORD="secret-pw", AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF,
               RESTIC_PROGRESS_FPS="200", COLUMNS="160")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "airflow_backup.cli", "-r", str(repo),
                             *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    written = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closes when the process ends
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, bytes(written[-2000:]))
    frames = [f.strip() for f in written.decode().replace("\x1b[2K", "").split("\r")
              if f.strip()]
    return out, frames


def test_a_terminal_gets_one_redrawn_line_with_percent_and_eta(repo: Path,
                                                              tmp_path: Path) -> None:
    data = _data(tmp_path)
    out, frames = _on_a_terminal(repo, "backup", str(data))
    assert frames and all(f.startswith("[") for f in frames), frames[:5]
    with_eta = [f for f in frames if "%" in f and " ETA " in f]
    assert with_eta, frames[-5:]
    assert f"total {FILES} files 40.000 MiB" in with_eta[-1]
    assert "snapshot" in out.decode()  # the result on stdout, the status line gone


def test_a_restore_on_a_terminal_shows_restics_status_line(repo: Path,
                                                          tmp_path: Path) -> None:
    data = _data(tmp_path)
    ok(run_cli(repo, "backup", data))
    out, frames = _on_a_terminal(repo, "restore", "latest", "--target",
                                 str(tmp_path / "restored"))
    assert frames, "a status line while restoring"
    # The total counts the files and every directory down to them (restic's files/dirs).
    assert all(" files/dirs " in f and " files/dirs 40.000 MiB" in f.split(", total ")[1]
               for f in frames), frames[-3:]
    assert "Summary: Restored" in out.decode()


def test_quiet_and_non_terminal_runs_print_no_status(repo: Path, tmp_path: Path) -> None:
    data = _data(tmp_path)
    proc = ok(run_cli(repo, "backup", data, env={"RESTIC_PROGRESS_FPS": "100"}))
    assert b"ETA" not in proc.stderr and b"%" not in proc.stderr
    quiet = ok(run_cli(repo, "-q", "--json", "backup", data,
                       env={"RESTIC_PROGRESS_FPS": "100"}))
    assert b'"message_type": "status"' not in quiet.stdout


def test_a_stream_backup_reports_the_bytes_read_so_far(repo: Path) -> None:
    data = os.urandom(24 << 20)
    proc = ok(run_cli(repo, "--json", "backup", "--stdin", "--stdin-filename", "s.bin",
                      stdin=data, env={"RESTIC_PROGRESS_FPS": "200"}))
    status = [m for m in map(json.loads, proc.stdout.decode().splitlines())
              if m["message_type"] == "status"]
    assert any(0 < m["bytes_done"] <= len(data) for m in status), status[-3:]
    assert all("percent_done" not in m for m in status)  # nothing to scan: no total


def test_a_database_backup_reports_the_bytes_of_its_export(repo: Path, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB)")
        conn.executemany("INSERT INTO t (blob) VALUES (?)",
                         [(os.urandom(4096),) for _ in range(4000)])  # ~16 MiB
    proc = ok(run_cli(repo, "--json", "backup", f"sqlite://{db}",
                      env={"RESTIC_PROGRESS_FPS": "200"}))
    status = [m for m in map(json.loads, proc.stdout.decode().splitlines())
              if m["message_type"] == "status"]
    assert any(m["bytes_done"] > 0 for m in status), status[-3:]
    done = [m["bytes_done"] for m in status]
    assert done == sorted(done)
