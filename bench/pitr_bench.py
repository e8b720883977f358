#!/usr/bin/env python3
"""WAL archiving under load: ``pg archive-wal`` (with and without archiving ahead) against
``pg_receivewal`` streaming to a local directory, on the same machine in the same run.

For each mode a fresh PostgreSQL 15 cluster of its own (initdb into a temp directory, own
port; tests/support/pg_cluster.py) is loaded with ``pgbench -c CLIENTS -T SECONDS`` while a
sampler records, every second, the archive backlog: for ``archive_command`` the WAL files
waiting in ``pg_wal/archive_status/*.ready``, for ``pg_receivewal`` the bytes between the
server's current LSN and what the receiver has flushed (``pg_stat_replication``). When the
load ends, the time until the backlog is gone is measured too. ``archive_command`` is
wrapped in a shell timer, so its latency per call includes starting the process. Prints a
table (``--json``: one JSON document)::

    .venv/bin/python bench/pitr_bench.py [--seconds 120] [--clients 4] [--scale 20]

Modes: ``ahead`` (the default ``pg archive-wal %p``), ``single`` (``--ahead 0``: one file
per process, the behaviour before archiving ahead) and ``receivewal``. Run as root the
server and the archiver run as the ``postgres`` user, as in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402

from support.pg_cluster import BIN, Cluster, own_cluster  # noqa: E402

PASSWORD = "bench-pitr-password"
SEGMENT = 16 * 1024 * 1024


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else list(argv)


def _launcher() -> list[str]:
    """How the server's OS user runs the CLI (as in tests/e2e/test_pg_pitr.py): under root
    the system Python with the venv's packages on PYTHONPATH."""
    if os.getuid() != 0:
        return [str(Path(sys.executable).parent / "airflow-backup")]
    return ["/usr/bin/python3.11", "-m", "airflow_backup"]


def _env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_", "PG"))}
    env.update(AIRFLOW_BACKUP_PASSWORD=PASSWORD, AIRFLOW_BACKUP_CACHE_DIR=str(base / "cache"))
    if os.getuid() == 0:
        src = ROOT / "src"
        packages = Path(sysconfig.get_paths()["purelib"])
        for path in (src, packages):
            for directory in (path, *path.parents):
                mode = directory.stat().st_mode
                if not mode & 0o001:
                    directory.chmod((mode & 0o7777) | 0o001)
        env["PYTHONPATH"] = f"{src}{os.pathsep}{packages}"
    return env


def _connect(cluster: Cluster) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(cluster.conninfo(), autocommit=True)


def _one(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> object:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _restart(cluster: Cluster, env: dict[str, str]) -> None:
    subprocess.run(_as_postgres(str(BIN / "pg_ctl"), "-D", str(cluster.data), "-l",
                                str(cluster.base / "log"), "-w", "-m", "fast", "restart"),
                   env=env, check=True, capture_output=True, timeout=300)


@dataclass
class Result:
    """One mode's figures."""

    mode: str
    tps: float = 0.0
    wal_mb: float = 0.0
    wal_mb_per_s: float = 0.0
    segments: int = 0
    backlog_end: float = 0.0  # segments waiting when the load ended
    backlog_max: float = 0.0
    backlog_last_quarter_slope: float = 0.0  # segments/minute over the last quarter
    drain_s: float = 0.0
    calls: int = 0
    call_p50_s: float = 0.0
    call_p95_s: float = 0.0
    call_max_s: float = 0.0
    busy_s_per_segment: float = 0.0
    failures: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)


def _backlog_archive(cluster: Cluster) -> float:
    status = cluster.data / "pg_wal" / "archive_status"
    try:
        return float(sum(1 for n in os.listdir(status) if n.endswith(".ready")))
    except OSError:
        return 0.0


def _backlog_stream(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    lag = _one(conn, "SELECT COALESCE(max(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)), "
                     "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')) FROM pg_stat_replication")
    return float(str(lag)) / SEGMENT


def run_mode(mode: str, seconds: int, clients: int, scale: int) -> Result:
    """Load a fresh cluster for ``seconds`` with archiving in ``mode``; return the figures."""
    result = Result(mode)
    with own_cluster() as cluster:
        base = cluster.base
        env = _env(base)
        times = base / "archive-times"
        receiver: subprocess.Popen[bytes] | None = None
        if mode == "receivewal":
            wal_dir = base / "received"
            wal_dir.mkdir()
            with _connect(cluster) as conn:
                conn.execute("SELECT pg_create_physical_replication_slot('bench')")
            receiver = subprocess.Popen(
                [str(BIN / "pg_receivewal"), "-h", "127.0.0.1", "-p", str(cluster.port),
                 "-U", "postgres", "-D", str(wal_dir), "--slot", "bench", "-n", "--synchronous",
                 "--status-interval", "1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            repo = base / "repo"
            subprocess.run(_as_postgres(*_launcher(), "-r", str(repo), "init"), env=env,
                           check=True, capture_output=True, timeout=120)
            ahead = " --ahead 0" if mode == "single" else ""
            cli = " ".join(_launcher())
            command = (f"t0=$(date +%%s.%%N); {cli} -r {repo} pg archive-wal{ahead} %p "
                       f">/dev/null 2>>{base}/archive.err; rc=$?; "
                       f"echo \"$t0 $(date +%%s.%%N) $rc\" >> {times}; exit $rc")
            with _connect(cluster) as conn:
                conn.execute("ALTER SYSTEM SET archive_mode = on")
                conn.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
            _restart(cluster, env)
        pgbench = ["pgbench", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
        subprocess.run([*pgbench, "-i", "-s", str(scale), "-q", "postgres"], check=True,
                       capture_output=True, timeout=600)
        conn = _connect(cluster)
        conn.execute("CHECKPOINT")
        start_lsn = str(_one(conn, "SELECT pg_current_wal_lsn()"))

        def backlog() -> float:
            return _backlog_stream(conn) if mode == "receivewal" else _backlog_archive(cluster)

        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            with _connect(cluster) as own:
                while not stop.is_set():
                    value = (_backlog_stream(own) if mode == "receivewal"
                             else _backlog_archive(cluster))
                    result.samples.append((round(time.monotonic() - t0, 1), round(value, 2)))
                    stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = subprocess.run([*pgbench, "-c", str(clients), "-j", "2", "-T", str(seconds),
                               "-n", "postgres"], check=True, capture_output=True, text=True,
                              timeout=seconds + 300)
        stop.set()
        sampler.join()
        for line in load.stdout.splitlines():
            if line.startswith("tps ="):
                result.tps = float(line.split()[2])
        end_lsn = str(_one(conn, "SELECT pg_current_wal_lsn()"))
        wal = float(str(_one(conn, f"SELECT pg_wal_lsn_diff('{end_lsn}', '{start_lsn}')")))
        result.wal_mb = round(wal / 1e6, 1)
        result.wal_mb_per_s = round(wal / 1e6 / seconds, 2)
        result.backlog_end = backlog()
        result.backlog_max = max((v for _, v in result.samples), default=0.0)
        last = [(t, v) for t, v in result.samples if t >= 0.75 * seconds]
        if len(last) >= 2:
            result.backlog_last_quarter_slope = round(
                (last[-1][1] - last[0][1]) / ((last[-1][0] - last[0][0]) / 60), 2)
        # Drain: until everything up to the load's end is archived / received.
        drained = time.monotonic()
        end_segment = str(_one(conn, f"SELECT pg_walfile_name('{end_lsn}')"))
        _one(conn, "SELECT pg_switch_wal()")
        while True:
            if mode == "receivewal":
                done = _backlog_stream(conn) * SEGMENT < 1 or float(str(_one(
                    conn, f"SELECT pg_wal_lsn_diff(flush_lsn, '{end_lsn}') FROM "
                          "pg_stat_replication"))) >= 0
            else:
                last_archived = _one(conn, "SELECT last_archived_wal FROM pg_stat_archiver")
                done = last_archived is not None and str(last_archived) >= end_segment
            if done:
                break
            if time.monotonic() - drained > 900:
                raise SystemExit(f"{mode}: backlog not drained after 15 minutes")
            time.sleep(0.2)
        result.drain_s = round(time.monotonic() - drained, 1)
        if mode == "receivewal":
            result.segments = sum(1 for p in (base / "received").iterdir()
                                  if len(p.name) == 24)
        else:
            row = conn.execute("SELECT archived_count, failed_count FROM pg_stat_archiver"
                               ).fetchone()
            assert row is not None
            result.segments, result.failures = int(str(row[0])), int(str(row[1]))
            calls = [line.split() for line in times.read_text().splitlines()]
            spans = [float(b) - float(a) for a, b, _ in calls]
            result.calls = len(spans)
            result.call_p50_s = round(statistics.median(spans), 3)
            result.call_p95_s = round(sorted(spans)[int(0.95 * (len(spans) - 1))], 3)
            result.call_max_s = round(max(spans), 3)
            ok = max(1, result.segments)
            result.busy_s_per_segment = round(sum(spans) / ok, 3)
        conn.close()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=30)
        shutil.rmtree(base / "repo", ignore_errors=True)
    return result


def main() -> None:
    """Parse options, run every mode, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--modes", default="ahead,single,receivewal")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_mode(m, args.seconds, args.clients, args.scale)
               for m in args.modes.split(",")]
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
        return
    print(f"pgbench -c {args.clients} -j 2 -T {args.seconds}, scale {args.scale}; "
          f"{os.cpu_count()} cores")
    print(f"{'mode':<11}{'tps':>7}{'WAL MB':>8}{'MB/s':>6}{'segs':>6}{'backlog@end':>12}"
          f"{'max':>6}{'slope/min':>10}{'drain s':>8}{'p50 s':>7}{'p95 s':>7}{'max s':>7}"
          f"{'s/seg':>7}{'fail':>5}")
    for r in results:
        print(f"{r.mode:<11}{r.tps:>7.0f}{r.wal_mb:>8.0f}{r.wal_mb_per_s:>6.1f}"
              f"{r.segments:>6}{r.backlog_end:>12.1f}{r.backlog_max:>6.1f}"
              f"{r.backlog_last_quarter_slope:>10.2f}{r.drain_s:>8.1f}{r.call_p50_s:>7.2f}"
              f"{r.call_p95_s:>7.2f}{r.call_max_s:>7.2f}{r.busy_s_per_segment:>7.3f}"
              f"{r.failures:>5}")


if __name__ == "__main__":
    main()
