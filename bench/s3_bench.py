#!/usr/bin/env python3
"""S3 at real-world latency: airflow-backup vs restic, through a latency-injecting proxy to
one moto S3 server on 127.0.0.1 (never a real cloud endpoint).

Generates a dataset (large random files, many small files, compressible text), starts moto
and :mod:`latency_proxy` in front of it, then for each added latency (0 ms and
``--latency-ms``, each way per request) and each of ``--repeat`` rounds runs every tool:

- ``airflow-backup``;
- ``restic`` with its default S3 connections (5);
- ``restic -o s3.connections=N`` with N = our S3 concurrency (:data:`OUR_CONCURRENCY`).

Each tool run inits a fresh repository in its own prefix of one bucket, then times three
cases: the first backup; an unchanged re-backup (the same data again, with the same cache
directory as that first backup: a user's real cache, so both tools find their parent snapshot
and cached tree/index files as they would day to day); and a full restore into a fresh
directory with a fresh, empty cache (a restore on a new machine, the disaster-recovery case),
verified byte for byte. Every run gets cache directories of its own. Both tools run as
subprocesses (process start-up counts for both). The 0 ms runs go through the proxy too (so
requests are counted the same way), with its bandwidth cap.

Each figure is the median of the rounds; request counts, bytes and the most requests in
flight are those of the median run. Prints a table (``--json``: one JSON document with every
run). ``make bench-s3`` runs it; by hand::

    .venv/bin/python bench/s3_bench.py [--size-mb 100] [--repeat 3] [--latency-ms 30] [--json]

``--profile DIR`` runs our CLI in the first round under cProfile
(``DIR/ours-<latency>ms-<case>.prof``; with ``--py-spy BIN``, py-spy samples of every thread
instead: ``….pyspy.txt``) and writes the proxy's request timelines
(``DIR/<tool>-<latency>ms-<case>.requests.json``). Profiled runs count in the medians: use a
separate run (``--repeat 1 --tools ours``) for profiles.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from latency_proxy import (  # noqa: E402
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY_MS,
    KINDS,
    LatencyProxy,
)
from tools import compile_ours  # noqa: E402

from support.moto import MotoServer  # noqa: E402

PASSWORD = "bench-password"
#: How many requests airflow-backup runs against S3 at once: ``Capabilities.remote()
#: .io_workers`` (storage/base.py), the thread pools of archiver/content.py and
#: restorer/filler.py. (s3fs/aiobotocore would allow 10 connections.)
OUR_CONCURRENCY = 8
RESTIC_DEFAULT_CONNECTIONS = 5
TOOLS = ("ours", "restic", f"restic-c{OUR_CONCURRENCY}")
CASES = ("backup", "rebackup", "restore")
_SHORT = {"get": "G", "get_range": "R", "put": "P", "head": "H", "list": "L", "delete": "D",
          "other": "O"}


def make_dataset(root: Path, size_mb: int, small_files: int, seed: int = 1) -> int:
    """Write the dataset; return its size in bytes."""
    rnd = random.Random(seed)
    root.mkdir(parents=True)
    total = 0
    small_budget = small_files * 8 * 1024
    big_total = max(0, size_mb * 1_000_000 - small_budget - 10_000_000)
    big_dir = root / "big"
    big_dir.mkdir()
    n_big = max(1, big_total // 25_000_000)
    for i in range(n_big):
        data = rnd.randbytes(big_total // n_big)
        (big_dir / f"blob-{i:02d}.bin").write_bytes(data)
        total += len(data)
    text = root / "text"
    text.mkdir()
    line = b"2024-06-01T00:00:00Z INFO airflow.task scheduled run of dag_id=etl_%05d ok\n"
    for i in range(10):
        data = b"".join(line % (i * 10_000 + j) for j in range(12_500))  # ~1 MB each
        (text / f"log-{i}.txt").write_bytes(data)
        total += len(data)
    small = root / "small"
    for i in range(small_files):
        d = small / f"d{i % 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        data = rnd.randbytes(rnd.randint(0, 16 * 1024))
        (d / f"f{i:05d}.dat").write_bytes(data)
        total += len(data)
    return total


def digest_tree(root: Path) -> dict[str, str]:
    """Return relative path -> SHA-256 for every regular file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run(argv: list[str], env: dict[str, str]) -> float:
    """Run a command; return its wall time. Exit with its output if it fails."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL,
                          check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(f"failed: {' '.join(argv[:8])}…\n{proc.stderr.decode()[-3000:]}\n")
        raise SystemExit(1)
    return elapsed


class Bench:
    """One moto server, one proxy, one dataset; runs tools and collects measurements."""

    def __init__(self, server: MotoServer, proxy: LatencyProxy, bucket: str, data: Path,
                 digests: dict[str, str], work: Path, base_env: dict[str, str],
                 profile: Path | None, py_spy: str | None = None) -> None:
        self.server = server
        self.proxy = proxy
        self.bucket = bucket
        self.data = data
        self.digests = digests
        self.work = work
        self.base_env = base_env
        self.profile = profile
        self.py_spy = py_spy

    def _command(self, tool: str, prefix: str, cache: Path,
                 prof: Path | None = None) -> tuple[list[str], dict[str, str]]:
        env = {**self.base_env, **self.server.env(), "AWS_ENDPOINT_URL": self.proxy.endpoint}
        if tool.startswith("restic"):
            env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(cache))
            cmd = ["restic", "-r", f"s3:{self.proxy.endpoint}/{self.bucket}/{prefix}"]
            if tool != "restic":
                cmd += ["-o", f"s3.connections={OUR_CONCURRENCY}"]
            return cmd, env
        env.update(AIRFLOW_BACKUP_PASSWORD=PASSWORD, AIRFLOW_BACKUP_CACHE_DIR=str(cache))
        py = [sys.executable]
        if prof is not None and self.py_spy:
            # Wall-clock samples of every thread, waiting included (cProfile sees only the
            # main thread).
            py = [self.py_spy, "record", "--idle", "--threads", "--rate", "200", "-f", "raw",
                  "-o", str(prof.with_suffix(".pyspy.txt")), "--", *py]
        elif prof is not None:
            py += ["-m", "cProfile", "-o", str(prof)]
        return [*py, "-m", "airflow_backup.cli", "-r", f"s3://{self.bucket}/{prefix}"], env

    def _measure(self, tool: str, case: str, argv: list[str], env: dict[str, str],
                 latency: float) -> dict[str, Any]:
        self.proxy.reset()
        seconds = run(argv, env)
        stats = self.proxy.stats()
        if self.profile is not None:
            t0 = min((r[0] for r in self.proxy.request_log()), default=0.0)
            log = [{"start": round(s - t0, 4), "end": round(e - t0, 4), "kind": k,
                    "method": m, "target": t} for s, e, k, m, t in self.proxy.request_log()]
            path = self.profile / f"{tool}-{latency:g}ms-{case}.requests.json"
            path.write_text(json.dumps(log))
        return {"seconds": seconds, **stats}

    def run_tool(self, tool: str, latency: float, round_no: int) -> dict[str, dict[str, Any]]:
        """Init, back up, back up again, restore and verify with one tool; return the
        measurements of each case."""
        tag = f"{tool}-{latency:g}ms-r{round_no}"
        prefix = f"{tag}-repo"
        cache = self.work / f"{tag}-cache"
        restore_cache = self.work / f"{tag}-restore-cache"
        target = self.work / f"{tag}-restore"
        cmd, env = self._command(tool, prefix, cache)
        run([*cmd, "init"], env)
        out: dict[str, dict[str, Any]] = {}
        for case in ("backup", "rebackup"):
            prof = None
            if self.profile is not None and tool == "ours" and round_no == 0:
                prof = self.profile / f"ours-{latency:g}ms-{case}.prof"
            cmd, env = self._command(tool, prefix, cache, prof)
            out[case] = self._measure(tool, case, [*cmd, "backup", str(self.data)], env,
                                      latency)
        prof = None
        if self.profile is not None and tool == "ours" and round_no == 0:
            prof = self.profile / f"ours-{latency:g}ms-restore.prof"
        cmd, env = self._command(tool, prefix, restore_cache, prof)
        out["restore"] = self._measure(
            tool, "restore", [*cmd, "restore", "latest", "--target", str(target)], env, latency)
        restored = target / str(self.data).lstrip("/")
        if digest_tree(restored) != self.digests:
            sys.stderr.write(f"{tool}: the restored tree differs from the source\n")
            raise SystemExit(1)
        out["backup"]["packs"] = len(self.server.list_keys(self.bucket, prefix + "/data/"))
        for d in (target, cache, restore_cache):
            shutil.rmtree(d, ignore_errors=True)
        return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the run whose time is the median (the lower middle one for an even count),
    with ``seconds`` set to the true median."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    pick = dict(ordered[(len(ordered) - 1) // 2])
    pick["seconds"] = statistics.median(r["seconds"] for r in runs)
    pick["all_seconds"] = [round(r["seconds"], 3) for r in runs]
    return pick


def kinds(r: dict[str, Any]) -> str:
    """Return request counts by kind, compactly (G get, R ranged get, P put, H head, L list,
    D delete, O other); kinds with no request are left out."""
    return " ".join(f"{_SHORT[k]}{r['requests'][k]}" for k in KINDS if r["requests"][k])


def print_table(summary: dict[str, Any], tools: list[str], size: int,
                args: argparse.Namespace) -> None:
    """Print the medians: one line per latency, case and tool."""
    mb = size / 1e6
    bandwidth = args.bandwidth
    print(f"dataset: {mb:.0f} MB ({args.small_files} small files); moto S3 on 127.0.0.1 "
          f"behind bench/latency_proxy.py ({bandwidth / 2**20:g} MiB/s each way, +1 RTT per "
          f"new connection); {os.cpu_count()} cores; median of {args.repeat}; our S3 "
          f"concurrency {OUR_CONCURRENCY}, restic default {RESTIC_DEFAULT_CONNECTIONS}")
    print("requests: G get, R ranged get, P put, H head, L list, D delete, O other; "
          "ratio = restic time / our time; inflight = most requests in flight at once")
    header = (f"{'latency':>7} {'case':<9}{'tool':<11}{'s':>8}{'ratio':>7}{'MB/s':>7}"
              f"{'requests':>9}  {'by kind':<34}{'MB up':>8}{'MB down':>9}{'inflight':>9}")
    print(header)
    print("-" * len(header))
    for lat, cases in summary.items():
        for case in CASES:
            ours = cases[case]["ours"]["seconds"]
            for tool in tools:
                r = cases[case][tool]
                ratio = "" if tool == "ours" else f"{r['seconds'] / ours:.2f}"
                rate = f"{mb / r['seconds']:.1f}" if case != "rebackup" else ""
                print(f"{lat + ' ms':>7} {case:<9}{tool:<11}{r['seconds']:>8.2f}{ratio:>7}"
                      f"{rate:>7}{r['total_requests']:>9}  {kinds(r):<34}"
                      f"{r['bytes_up'] / 1e6:>8.1f}{r['bytes_down'] / 1e6:>9.1f}"
                      f"{r['max_in_flight']:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="dataset size (MB)")
    parser.add_argument("--small-files", type=int, default=2000, help="number of small files")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS,
                        help="added latency each way per request, run beside 0 ms "
                             "(default %(default)s)")
    parser.add_argument("--bandwidth", type=float, default=DEFAULT_BANDWIDTH,
                        help="proxy cap in bytes/s each way, 0 = none (default 100 MiB/s)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated subset of {','.join(TOOLS)} (ours always runs)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="cProfile our CLI (first round) and write request timelines")
    parser.add_argument("--py-spy", default=None, metavar="BIN",
                        help="with --profile: sample with this py-spy binary instead of "
                             "cProfile (every thread, waiting included)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    compile_ours()  # as an installed copy has it: see tools.compile_ours
    if shutil.which("restic") is None:
        raise SystemExit("restic is not on PATH (make tools installs it)")
    tools = ["ours", *(t for t in args.tools.split(",") if t in TOOLS and t != "ours")]
    latencies = sorted({0.0, args.latency_ms})
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="s3-bench-"))
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_", "AWS_"))}
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    try:
        data = work / "data"
        size = make_dataset(data, args.size_mb, args.small_files)
        digests = digest_tree(data)
        with MotoServer(log_path=work / "moto.log") as server, \
                LatencyProxy(server.endpoint, bandwidth=args.bandwidth,
                             record=args.profile is not None) as proxy:
            bucket = server.create_bucket("bench")
            bench = Bench(server, proxy, bucket, data, digests, work, base_env, args.profile,
                          args.py_spy)
            for lat in latencies:
                proxy.latency_ms = lat
                per_case = runs.setdefault(f"{lat:g}", {c: {} for c in CASES})
                for round_no in range(args.repeat):
                    # Tools take turns within a round, so drift hits them alike.
                    for tool in tools:
                        print(f"latency {lat:g} ms, round {round_no + 1}/{args.repeat}: "
                              f"{tool}", file=sys.stderr, flush=True)
                        result = bench.run_tool(tool, lat, round_no)
                        for case, r in result.items():
                            per_case[case].setdefault(tool, []).append(r)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    summary = {lat: {case: {tool: median_run(rs) for tool, rs in by_tool.items()}
                     for case, by_tool in cases.items()}
               for lat, cases in runs.items()}
    if args.json:
        print(json.dumps({"dataset_bytes": size, "small_files": args.small_files,
                          "repeat": args.repeat, "bandwidth": args.bandwidth,
                          "our_concurrency": OUR_CONCURRENCY, "cores": os.cpu_count(),
                          "summary": summary, "runs": runs}))
        return
    print_table(summary, tools, size, args)


if __name__ == "__main__":
    main()
