"""PostgreSQL point-in-time recovery through the CLI (``airflow-backup pg ...``).

The archive contract is checked on WAL-named files without a server. The slow test is in
pgBackRest's style, on a cluster of the test's own (never the machine's shared server): the
server archives WAL with ``archive_command = 'airflow-backup ... pg archive-wal %p'`` while
pgbench runs; a sentinel row is inserted at several moments, each recorded as a time, an LSN,
an xid and a named restore point; then for each target type a base backup is restored into
a new directory, a second server recovers there, and exactly the sentinel rows before the
target must exist. restic checks the repository, data included, at the end.

Also: ``pg archive-wal`` SIGKILLed at many moments of a 16 MiB segment and run again; a
restore after a promotion following the new timeline (on a server whose archiver is
SIGKILLed on every file's first attempt); the round trip into an S3 repository on moto.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

import airflow_backup
from support.cli import FAST_KDF, ok, one_line_error, repo, run_cli
from support.moto import MotoServer
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


def _restic_check(repo_dir: Path | str, env: dict[str, str]) -> str:
    """``restic unlock`` (the stale locks of killed processes) then ``restic check
    --read-data``; assert both pass and return check's output."""
    restic = shutil.which("restic")
    assert restic is not None, "restic not found (run 'make tools')"
    for args in (["unlock"], ["check", "--read-data"]):
        proc = subprocess.run([restic, "-r", str(repo_dir), "--no-cache", *args], env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


def _repo_files(repo_dir: Path, folder: str) -> set[str]:
    return {str(p.relative_to(repo_dir)) for p in (repo_dir / folder).rglob("*") if p.is_file()}


@pytest.mark.slow
def test_killed_archiver_never_loses_or_corrupts_a_segment(repo: Path, tmp_path: Path) -> None:
    """SIGKILL ``pg archive-wal`` on a 16 MiB segment at moments spread over its run (by
    time, and as soon as a pack is being written, a pack is complete, an index or a snapshot
    is being written), then archive the same segment again: it must succeed and restore the
    exact bytes, and restic must find the repository sound, data included."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    cache = {"AIRFLOW_BACKUP_CACHE_DIR": str(tmp_path / "cache")}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, AIRFLOW_BACKUP_PASSWORD="secret-pw", **cache)
    argv = [sys.executable, "-m", "airflow_backup.cli", "-r", str(repo), "pg", "archive-wal"]
    wal = tmp_path / "pg_wal"
    durations = []
    for n in (0x0E, 0x0F):  # the second run is warm, as archive_command calls are
        started = time.monotonic()
        ok(run_cli(repo, "pg", "archive-wal", _segment(wal / f"0000000100000000000000{n:02X}", n),
                   env=cache))
        durations.append(time.monotonic() - started)
    full = durations[-1]

    def new_in(folder: str, tmp: bool) -> Callable[[set[str]], bool]:
        def seen(before: set[str]) -> bool:
            now = _repo_files(repo, folder) - before
            return any(("/.tmp-" in f) == tmp for f in now)
        return seen

    moments: list[tuple[str, Callable[[set[str]], bool] | float]] = [
        (f"{f:.0%} of a run", full * f) for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    moments += [("a pack being written", new_in("data", True)),
                ("a pack complete", new_in("data", False)),
                ("an index being written", new_in("index", True)),
                ("an index complete", new_in("index", False)),
                ("a snapshot being written", new_in("snapshots", True))]
    report = [f"one 16 MiB archive-wal: {durations[0]:.2f}s cold, {full:.2f}s warm"]
    hits = 0
    left: list[int] = []  # new repository files a killed run left behind
    for i, (what, when) in enumerate(moments):
        seg = _segment(wal / f"0000000100000000000000{0x10 + i:02X}", i + 0x10)
        before = {f for d in ("data", "index", "snapshots") for f in _repo_files(repo, d)}
        proc = subprocess.Popen([*argv, str(seg)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if isinstance(when, float):
            time.sleep(when)
        else:
            deadline = time.monotonic() + 30
            while proc.poll() is None and not when(before) and time.monotonic() < deadline:
                time.sleep(0.0005)
        proc.kill()
        killed = proc.wait(timeout=30) == -signal.SIGKILL
        hits += killed
        after = {f for d in ("data", "index", "snapshots") for f in _repo_files(repo, d)}
        if killed:
            left.append(len(after - before))
        again = ok(run_cli(repo, "pg", "archive-wal", seg, env=cache))
        got = tmp_path / "RECOVERYXLOG"
        ok(run_cli(repo, "pg", "restore-wal", seg.name, got, env=cache))
        assert got.read_bytes() == seg.read_bytes(), (what, seg.name)
        report.append(f"kill at {what}: {'killed' if killed else 'had finished'}, left "
                      f"{len(after - before)} new file(s); again: "
                      f"{again.stdout.decode().strip()}")
    print("\n" + "\n".join(report))
    # The kills land while the archiver works: how many do depends on the machine's load
    # (a run can finish before a moment measured on an earlier one), so at least half of
    # them, and at least two in the middle of the run's writes (some files left, not all).
    full = max(left, default=0)
    assert hits >= len(moments) // 2, report
    assert sum(1 for n in left if 0 < n < full) >= 2 or sum(1 for n in left if n < full) >= 3, \
        report
    snaps = json.loads(ok(run_cli(repo, "snapshots", "--tag", "wal", "--json")).stdout)
    names = sorted(str(sn["tags"][-1]) for sn in snaps)
    assert len(names) == len(set(names)) == len(moments) + 2, names  # one per segment
    _restic_check(repo, {**env, "RESTIC_PASSWORD": "secret-pw"})


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
    """The environment of the CLI and of the servers: the repository password, and
    whatever else this process has (the moto fixture's AWS_* variables among it)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_", "PG"))}
    env.update(AIRFLOW_BACKUP_PASSWORD=PASSWORD, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF,
               AIRFLOW_BACKUP_CACHE_DIR=str(base / "cache"))
    if os.getuid() == 0:
        src = Path(airflow_backup.__file__).resolve().parents[1]
        packages = Path(sysconfig.get_paths()["purelib"])
        _let_others_through(src, packages)
        env["PYTHONPATH"] = f"{src}{os.pathsep}{packages}"
    return env


def _let_others_through(*paths: Path) -> None:
    """Give every directory above ``paths`` the search bit for others, so that the
    ``postgres`` user can reach the checkout and its venv: a CI checkout in a ``mktemp -d``
    directory (mode 0700) would otherwise hide them. Nothing becomes readable that was not."""
    for path in paths:
        for directory in (path, *path.parents):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _cli(base: Path, repo_dir: Path | str, *args: str, timeout: float = 600
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
def _recovered(base: Path, data: Path, archive: str = "") -> Iterator[int]:
    """Start a server on the restored ``data`` (own port; no archiving unless ``archive``
    gives an archive_command); yield its port once recovery has ended (promoted)."""
    port, log = _free_port(), base / f"{data.name}.log"
    mode = (f"-c archive_mode=on -c archive_command='{archive}'" if archive
            else "-c archive_mode=off")
    started = _pg_ctl(base, "-D", str(data), "-l", str(log), "-w", "-t", "300", "-o",
                      f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                      f"{mode} -c fsync=off", "start", timeout=330)
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


def _start_archiving(cluster: Cluster, command: str) -> None:
    """Turn archiving on with ``command`` and restart the server (whose environment,
    :func:`_env`, carries the repository password and any AWS_* variables)."""
    with _connect(cluster.port) as conn:
        conn.execute("ALTER SYSTEM SET archive_mode = on")
        conn.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
    restarted = _pg_ctl(cluster.base, "-D", str(cluster.data), "-l",
                        str(cluster.base / "log"), "-w", "-m", "fast", "restart")
    assert restarted.returncode == 0, restarted.stderr


def _mark(conn: psycopg.Connection[tuple[object, ...]], row: int) -> str:
    """Insert sentinel ``row``; return the time just after it committed (the next commit
    comes more than a second later)."""
    conn.execute("INSERT INTO sentinel VALUES (%s, clock_timestamp())", (row,))
    got = conn.execute("SELECT clock_timestamp()::text").fetchone()
    assert got is not None
    time.sleep(1.1)
    return str(got[0])


def _ids(port: int) -> list[int]:
    with _connect(port) as conn:
        return [int(str(r[0])) for r in conn.execute("SELECT id FROM sentinel ORDER BY id")]


def _timeline(port: int) -> int:
    with _connect(port) as conn:
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        assert row is not None
        return int(str(row[0]))


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
    repo_dir = archiving.base / "repo"
    _recover_to_every_target(archiving, str(repo_dir), str(repo_dir))


def _recover_to_every_target(cluster: Cluster, repo_dir: str, restic_repo: str) -> None:
    """pgbench load with sentinel rows recorded at (time, LSN, xid, restore point); for each
    target type, restore and check exactly the right sentinel rows exist; restic checks the
    repository (``restic_repo``: its spelling of ``repo_dir``)."""
    base = cluster.base
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
        secrets = [PASSWORD, *(v for k, v in _env(base).items() if k == "AWS_SECRET_ACCESS_KEY")]
        for secret in secrets:
            assert secret not in auto and secret not in restored.stdout + restored.stderr
        assert f"-r {repo_dir} pg restore-wal %f %p" in auto
        assert (target / "recovery.signal").exists()
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
    check = subprocess.run([restic, "-r", restic_repo, "--no-cache", "check", "--read-data"],
                           env={**_env(base), "RESTIC_PASSWORD": PASSWORD},
                           capture_output=True, text=True, timeout=600, check=False)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


# ---- timelines, with an archiver killed mid-segment --------------------------------------

#: archive_command wrapper: the first attempt at each file is SIGKILLed after a delay that
#: cycles through DELAYS (a real server's archiver killed mid-segment), then the file is
#: archived again in the same call. Each first attempt's outcome goes to MARKS/<file>.
_KILLER = """#!/bin/sh
mark="{marks}/$2"
if [ ! -e "$mark" ]; then
  n=$(ls "{marks}" | wc -l)
  d=$(echo "{delays}" | cut -d' ' -f$(( n % {count} + 1 )))
  {command} "$1" >/dev/null 2>&1 &
  pid=$!
  sleep "$d"
  kill -9 "$pid" 2>/dev/null
  wait "$pid"
  echo "$? $d" > "$mark"
fi
exec {command} "$1"
"""


def _killing_archiver(base: Path, repo_dir: Path) -> str:
    """Write the killer wrapper for ``repo_dir``; return the archive_command running it."""
    marks = base / "kills"
    marks.mkdir()
    # Short: a call answered from an archiving-ahead receipt ends within ~0.1 s.
    delays = "0.01 0.03 0.05 0.08 0.12 0.2"
    command = " ".join([*_launcher(), "-r", str(repo_dir), "pg", "archive-wal"])
    script = base / "archive-killer.sh"
    script.write_text(_KILLER.format(marks=marks, delays=delays, count=len(delays.split()),
                                     command=command))
    script.chmod(0o755)
    if os.getuid() == 0:
        for path in (marks, script):
            shutil.chown(path, "postgres")
    return f"{script} %p %f"


@pytest.mark.slow
def test_restore_after_promotion_follows_the_new_timeline(tmp_path: Path) -> None:
    """Timeline 1 archives (its archiver SIGKILLed mid-way through every file's first
    attempt); a restore to a time on it is promoted to timeline 2, which archives into the
    same repository (its .history included); then a restore to a time on timeline 2
    (recovery_target_timeline latest) must use a base backup that can reach timeline 2 —
    not the newer one taken on timeline 1 after the switch — and see exactly the rows of
    timeline 2's history: timeline 1 up to the switch, then timeline 2 up to the target."""
    t0 = time.monotonic()
    with own_cluster() as cluster:
        base, repo_dir = cluster.base, cluster.base / "repo"
        _cli(base, repo_dir, "init")
        archive = _killing_archiver(base, repo_dir)
        _start_archiving(cluster, archive)
        with _connect(cluster.port) as conn:
            conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, at timestamptz)")
            conn.execute("INSERT INTO sentinel VALUES (0, clock_timestamp())")
            old = json.loads(_cli(base, repo_dir, "--json", "pg", "basebackup", "--dbname",
                                  cluster.url()).stdout.splitlines()[-1])
            t1 = _mark(conn, 1)                      # timeline 2 will branch here
            _mark(conn, 2)
            late = json.loads(_cli(base, repo_dir, "--json", "pg", "basebackup", "--dbname",
                                   cluster.url()).stdout.splitlines()[-1])
            _mark(conn, 3)                           # timeline 1 only
            _wait_archived(conn)
        setup = time.monotonic() - t0

        # Restore to t1 and promote: timeline 2, archiving into the same repository.
        branch = base / "branch"
        _cli(base, repo_dir, "pg", "restore", "--target-dir", str(branch), "--target-time",
             t1, "--target-action", "promote")
        with _recovered(base, branch, archive=archive) as port:
            assert _ids(port) == [0, 1] and _timeline(port) == 2
            with _connect(port) as conn:
                t2 = _mark(conn, 101)
                _mark(conn, 102)                     # after the target on timeline 2
                _wait_archived(conn)
        branched = time.monotonic() - t0 - setup
        listing = json.loads(_cli(base, repo_dir, "--json", "pg", "list").stdout)
        names = {w["name"] for w in listing["wal"]}
        assert "00000002.history" in names  # archived by the promoted server

        # Restore to t2 on the latest timeline: the late backup (timeline 1, ended after
        # the switch, before t2) cannot reach timeline 2; the old one can.
        final = base / "final"
        restored = json.loads(_cli(base, repo_dir, "--json", "pg", "restore", "--target-dir",
                                   str(final), "--target-time", t2, "--target-action",
                                   "promote").stdout.splitlines()[-1])
        assert restored["snapshot_id"] == old["snapshot_id"] != late["snapshot_id"]
        with _recovered(base, final) as port:
            ids, tli = _ids(port), _timeline(port)
        assert ids == [0, 1, 101], (ids, _tail(base / "final.log"))
        assert tli == 3  # promoted once more, off timeline 2
        recovered = time.monotonic() - t0 - setup - branched

        # What the late backup would have done (the choice before timelines counted):
        # PostgreSQL refuses to start, timeline 2 not being a child of its history.
        wrong = base / "wrong"
        _cli(base, repo_dir, "pg", "restore", "--target-dir", str(wrong), "--target-time",
             t2, "--target-action", "promote", "--backup", late["snapshot_id"][:8])
        refused = _pg_ctl(base, "-D", str(wrong), "-l", str(base / "wrong.log"), "-w", "-o",
                          f"-p {_free_port()} -k {base} -c listen_addresses=127.0.0.1 "
                          "-c archive_mode=off", "start", timeout=120)
        assert refused.returncode != 0
        assert "not a child of this server's history" in _tail(base / "wrong.log")

        kills = sorted(f"{m.name}: {m.read_text().split()}" for m in (base / "kills").iterdir())
        hit = [k for k in kills if "'137'" in k]
        print(f"\ntimeline 1 + 2 base backups {setup:.1f}s; restore + promote to timeline 2 "
              f"+ archive {branched:.1f}s; restore to timeline 2 {recovered:.1f}s; "
              f"{len(hit)} of {len(kills)} first archive attempts SIGKILLed mid-way:\n"
              + "\n".join(kills))
        assert len(hit) >= 3, kills
        _restic_check(repo_dir, {**_env(base), "RESTIC_PASSWORD": PASSWORD})


# ---- an S3 repository (moto) --------------------------------------------------------------


@pytest.mark.slow
def test_point_in_time_recovery_into_an_s3_repository(moto_server: MotoServer,
                                                      s3_bucket: str) -> None:
    """The same under pgbench load with the repository on S3 (a moto server on 127.0.0.1):
    the server's archive_command writes to ``s3://BUCKET/pitr`` with the credentials from
    its environment, a base backup goes there too, and a restore to each target type
    recovers exactly the sentinel rows before it, fetching WAL from S3 (the credentials
    never written into the restored configuration); restic checks the bucket."""
    url = f"s3://{s3_bucket}/pitr"
    with own_cluster() as cluster:
        base = cluster.base
        env = _env(base)
        assert env.get("AWS_ENDPOINT_URL") == moto_server.endpoint  # the server's env too
        _cli(base, url, "init")
        _start_archiving(cluster, " ".join([*_launcher(), "-r", url, "pg", "archive-wal",
                                            "%p"]))
        _recover_to_every_target(cluster, url, moto_server.restic_url(s3_bucket, "pitr"))
        snapshots = moto_server.list_keys(s3_bucket, "pitr/snapshots/")
        print(f"S3: {len(snapshots)} snapshots in the bucket")
