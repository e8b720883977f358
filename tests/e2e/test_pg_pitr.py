"""PostgreSQL point-in-time recovery through the CLI (``airflow-backup pg ...``).

The archive contract is checked on WAL-named files without a server. The slow test is in
pgBackRest's style, on a cluster of the test's own (never the machine's shared server): the
server archives WAL with ``archive_command = 'airflow-backup ... pg archive-wal %p'`` while
pgbench runs; a sentinel row is inserted at several moments, each recorded as a time, an LSN,
an xid and a named restore point; then for each target type a base backup is restored into
a new directory, a second server recovers there, and exactly the sentinel rows before the
target must exist. restic checks the repository, data included, at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

import airflow_backup
from support.cli import FAST_KDF, ok, one_line_error, repo, run_cli
from support.pg_cluster import BIN, Cluster, own_cluster

__all__ = ["repo"]  # the fixture, imported for the archive-contract tests

PASSWORD = "pitr-secret-7f3a"
CLI = str(Path(sys.executable).parent / "airflow-backup")
SEGMENT = "000000010000000000000007"


# ---- the archive contract, without a server ------------------------------------------------


def _segment(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([seed]) * 4096 + os.urandom(16 * 1024 * 1024 - 4096))
    return path


def test_archive_same_segment_twice_is_success(repo: Path, tmp_path: Path) -> None:
    seg = _segment(tmp_path / "pg_wal" / SEGMENT, 1)
    first = ok(run_cli(repo, "pg", "archive-wal", seg))
    assert b"archived as snapshot" in first.stdout
    again = ok(run_cli(repo, "pg", "archive-wal", seg))
    assert b"already archived with the same content" in again.stdout
    out = tmp_path / "RECOVERYXLOG"
    ok(run_cli(repo, "pg", "restore-wal", SEGMENT, out))
    assert out.read_bytes() == seg.read_bytes()
    # One snapshot for the segment, tagged for restic users.
    snaps = ok(run_cli(repo, "snapshots", "--tag", "wal")).stdout.decode()
    assert f"segment={SEGMENT}" in snaps and "1 snapshots" in snaps


def test_archive_different_content_under_same_name_fails(repo: Path, tmp_path: Path) -> None:
    ok(run_cli(repo, "pg", "archive-wal", _segment(tmp_path / "a" / SEGMENT, 1)))
    other = _segment(tmp_path / "b" / SEGMENT, 2)
    line = one_line_error(run_cli(repo, "pg", "archive-wal", other), exit_code=1)
    assert "already archived" in line and "different content" in line
    # The first copy is still the one served.
    out = tmp_path / "x"
    ok(run_cli(repo, "pg", "restore-wal", SEGMENT, out))
    assert out.read_bytes()[:1] == b"\x01"


def test_history_partial_backup_files_and_missing(repo: Path, tmp_path: Path) -> None:
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    files = {"00000002.history": b"1\t0/3000000\tno recovery target specified\n",
             "000000010000000000000003.partial": os.urandom(1 << 20),
             "000000010000000000000002.00000028.backup": b"START WAL LOCATION: 0/2000028\n"}
    for name, data in files.items():
        (wal / name).write_bytes(data)
        ok(run_cli(repo, "pg", "archive-wal", wal / name))
    # A .history file is never overwritten either.
    (tmp_path / "00000002.history").write_bytes(b"1\t0/4000000\tother\n")
    one_line_error(run_cli(repo, "pg", "archive-wal", tmp_path / "00000002.history"), 1)
    for name, data in files.items():
        ok(run_cli(repo, "pg", "restore-wal", name, tmp_path / "got"))
        assert (tmp_path / "got").read_bytes() == data
    # Not archived: exit 1 (PostgreSQL's "no such file"), and nothing written.
    missing = run_cli(repo, "pg", "restore-wal", "00000003.history", tmp_path / "none")
    assert missing.returncode == 1 and not (tmp_path / "none").exists()
    # Not a WAL name: refused.
    (tmp_path / "notes.txt").write_text("x")
    assert run_cli(repo, "pg", "archive-wal", tmp_path / "notes.txt").returncode == 1


def test_restore_wal_aborts_recovery_on_real_errors(repo: Path, tmp_path: Path) -> None:
    """A wrong password is not "end of WAL": exit above 125 so that recovery aborts."""
    proc = run_cli(repo, "pg", "restore-wal", SEGMENT, tmp_path / "x", password="wrong")
    assert proc.returncode == 126, proc.stderr


# ---- point-in-time recovery on a real cluster --------------------------------------------


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else list(argv)


#: The system interpreter the server's OS user runs the CLI with when the tests run as root.
SYSTEM_PYTHON = Path("/usr/bin/python3.11")


def _launcher() -> list[str]:
    """Return how the server's OS user runs the CLI: the venv's ``airflow-backup``; under
    root (the server runs as ``postgres``, who may not enter the root-owned directory of
    the venv's interpreter) the system Python 3.11 with the venv's packages (see
    :func:`_env`)."""
    if os.getuid() != 0:
        return [CLI]
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"{SYSTEM_PYTHON} is needed to run the CLI as the postgres user")
    return [str(SYSTEM_PYTHON), "-m", "airflow_backup"]


def _env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_", "PG"))}
    env.update(AIRFLOW_BACKUP_PASSWORD=PASSWORD, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF,
               AIRFLOW_BACKUP_CACHE_DIR=str(base / "cache"))
    if os.getuid() == 0:
        src = Path(airflow_backup.__file__).resolve().parents[1]
        env["PYTHONPATH"] = f"{src}{os.pathsep}{sysconfig.get_paths()['purelib']}"
    return env


def _cli(base: Path, repo_dir: Path, *args: str, timeout: float = 600
         ) -> subprocess.CompletedProcess[str]:
    """Run the CLI as the server's OS user (as archive_command runs)."""
    proc = subprocess.run(_as_postgres(*_launcher(), "-r", str(repo_dir), *args),
                          env=_env(base),
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def _pg_ctl(base: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_postgres(str(BIN / "pg_ctl"), *args), env=_env(base),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)


def _connect(port: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                           autocommit=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _recovered(base: Path, data: Path) -> Iterator[int]:
    """Start a server on the restored ``data`` (own port, no archiving); yield its port once
    recovery has ended (promoted)."""
    port, log = _free_port(), base / f"{data.name}.log"
    started = _pg_ctl(base, "-D", str(data), "-l", str(log), "-w", "-t", "300", "-o",
                      f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                      "-c archive_mode=off -c fsync=off", "start", timeout=330)
    try:
        assert started.returncode == 0, (started.stderr, _tail(log))
        deadline = time.monotonic() + 300
        while True:
            try:
                with _connect(port) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and row[0] is False:
                        break
            except psycopg.OperationalError:
                pass
            assert time.monotonic() < deadline, _tail(log)
            time.sleep(0.3)
        yield port
    finally:
        _pg_ctl(base, "-D", str(data), "-m", "immediate", "-w", "stop")


def _tail(log: Path) -> str:
    try:
        return log.read_text()[-3000:]
    except OSError:
        return "(no log)"


def _wait_archived(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    last = str(row[0])
    deadline = time.monotonic() + 180
    while True:
        got = conn.execute("SELECT last_archived_wal, failed_count FROM pg_stat_archiver"
                           ).fetchone()
        assert got is not None
        if got[0] is not None and str(got[0]) >= last:
            assert got[1] == 0, f"{got[1]} archive_command failure(s)"
            return last
        assert time.monotonic() < deadline, f"not archived: {last} (at {got})"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def archiving() -> Iterator[Cluster]:
    """A cluster archiving WAL into its own repository (``<base>/repo``)."""
    with own_cluster() as cluster:
        repo_dir = cluster.base / "repo"
        _cli(cluster.base, repo_dir, "init")
        command = " ".join([*_launcher(), "-r", str(repo_dir), "pg", "archive-wal", "%p"])
        with _connect(cluster.port) as conn:
            conn.execute("ALTER SYSTEM SET archive_mode = on")
            conn.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
        # The server's environment carries the password; postmaster.opts keeps the options.
        restarted = _pg_ctl(cluster.base, "-D", str(cluster.data), "-l",
                            str(cluster.base / "log"), "-w", "-m", "fast", "restart")
        assert restarted.returncode == 0, restarted.stderr
        yield cluster


@pytest.mark.slow
def test_point_in_time_recovery_to_every_target(archiving: Cluster) -> None:
    cluster, base = archiving, archiving.base
    repo_dir = base / "repo"
    pgbench = ["pgbench", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
    subprocess.run([*pgbench, "-i", "-s", "5", "-q", "postgres"], check=True,
                   capture_output=True, timeout=300)
    marks: list[dict[str, str]] = []
    with _connect(cluster.port) as conn:
        conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, at timestamptz)")
        conn.execute("INSERT INTO sentinel VALUES (0, clock_timestamp())")
        bb = _cli(base, repo_dir, "pg", "basebackup", "--dbname", cluster.url())
        assert "base backup" in bb.stdout
        load = subprocess.Popen([*pgbench, "-c", "4", "-T", "10", "-n", "postgres"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for k in range(1, 6):
                time.sleep(1.5)
                with conn.transaction():
                    row = conn.execute("INSERT INTO sentinel VALUES (%s, clock_timestamp()) "
                                       "RETURNING txid_current()", (k,)).fetchone()
                assert row is not None
                xid = str(row[0])
                after = conn.execute("SELECT clock_timestamp()::text, "
                                     "pg_current_wal_lsn()::text").fetchone()
                assert after is not None
                conn.execute("SELECT pg_create_restore_point(%s)", (f"after-{k}",))
                marks.append({"xid": xid, "time": str(after[0]), "lsn": str(after[1]),
                              "name": f"after-{k}"})
                time.sleep(1.1)  # the next commit is clearly later than this time
        finally:
            _, err = load.communicate(timeout=120)
        assert load.returncode == 0, err
        conn.execute("INSERT INTO sentinel VALUES (6, clock_timestamp())")
        last = _wait_archived(conn)
        segments = int(last[16:], 16) - 1
    print(f"\nWAL archived through {last} (~{segments} segments of 16 MiB)")

    cases = [("immediate", ["--target-immediate"], 0),
             ("time", ["--target-time", marks[0]["time"]], 1),
             ("lsn", ["--target-lsn", marks[1]["lsn"]], 2),
             ("xid", ["--target-xid", marks[2]["xid"]], 3),
             ("name", ["--target-name", marks[3]["name"]], 4),
             ("latest", [], 6)]
    for kind, flags, upto in cases:
        target = base / f"restored-{kind}"
        started = time.monotonic()
        restored = _cli(base, repo_dir, "pg", "restore", "--target-dir", str(target),
                        "--target-action", "promote", *flags)
        extracted = time.monotonic() - started
        auto = (target / "postgresql.auto.conf").read_text()
        assert PASSWORD not in auto and PASSWORD not in restored.stdout + restored.stderr
        assert "pg restore-wal %f %p" in auto and (target / "recovery.signal").exists()
        with _recovered(base, target) as port, _connect(port) as conn:
            recovered = time.monotonic() - started - extracted
            ids = [r[0] for r in conn.execute("SELECT id FROM sentinel ORDER BY id")]
            tli = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        expected = list(range(upto + 1))
        assert ids == expected, (kind, ids, _tail(base / f"{target.name}.log"))
        print(f"{kind:9s} target: rows {ids}; base restore {extracted:.1f}s, recovery "
              f"{recovered:.1f}s, timeline {tli[0] if tli else '?'}")
        shutil.rmtree(target, ignore_errors=True)

    restic = shutil.which("restic")
    assert restic is not None, "restic not found (run 'make tools')"
    check = subprocess.run([restic, "-r", str(repo_dir), "--no-cache", "check", "--read-data"],
                           env={**_env(base), "RESTIC_PASSWORD": PASSWORD},
                           capture_output=True, text=True, timeout=600, check=False)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
