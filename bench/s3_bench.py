#!/usr/bin/env python3
"""S3 throughput: airflow-backup vs restic, against one moto S3 server on 127.0.0.1, same run.

Starts a moto server (never a real cloud endpoint), generates a dataset (large random files,
many small files, compressible text), then for each tool: init a fresh repository in its own
prefix of one bucket, back the dataset up, restore it into a fresh directory, verify the
restore byte for byte, and time backup and restore. Both tools run as subprocesses (process
start-up counts for both), each with a fresh cache directory. Prints a table (``--json`` for
a machine-readable line). Meant to be run by ``make bench`` (an S3 option) or by hand::

    .venv/bin/python bench/s3_bench.py [--size-mb 200] [--small-files 2000] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.moto import MotoServer  # noqa: E402

PASSWORD = "bench-password"


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
        sys.stderr.write(f"failed: {' '.join(argv[:6])}…\n{proc.stderr.decode()[-3000:]}\n")
        raise SystemExit(1)
    return elapsed


def bench_tool(name: str, server: MotoServer, bucket: str, data: Path, work: Path,
               base_env: dict[str, str]) -> dict[str, float]:
    """Back up and restore ``data`` with one tool; return timings."""
    prefix = f"{name}-repo"
    cache = work / f"{name}-cache"
    target = work / f"{name}-restore"
    env = {**base_env, **server.env()}
    if name == "restic":
        repo = server.restic_url(bucket, prefix)
        env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(cache))
        cmd = ["restic", "-r", repo]
    else:
        repo = f"s3://{bucket}/{prefix}"
        env.update(AIRFLOW_BACKUP_PASSWORD=PASSWORD, AIRFLOW_BACKUP_CACHE_DIR=str(cache))
        cmd = [sys.executable, "-m", "airflow_backup.cli", "-r", repo]
    run([*cmd, "init"], env)
    backup_s = run([*cmd, "backup", str(data)], env)
    rebackup_s = run([*cmd, "backup", str(data)], env)
    restore_s = run([*cmd, "restore", "latest", "--target", str(target)], env)
    restored = target / str(data).lstrip("/")
    if digest_tree(restored) != digest_tree(data):
        sys.stderr.write(f"{name}: the restored tree differs from the source\n")
        raise SystemExit(1)
    stored = sum(1 for _ in server.list_keys(bucket, prefix + "/data/"))
    shutil.rmtree(target)
    return {"backup_s": backup_s, "second_backup_s": rebackup_s, "restore_s": restore_s,
            "packs": stored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="dataset size (MB)")
    parser.add_argument("--small-files", type=int, default=2000, help="number of small files")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if shutil.which("restic") is None:
        raise SystemExit("restic is not on PATH (make tools installs it)")

    work = Path(tempfile.mkdtemp(prefix="s3-bench-"))
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_", "AWS_"))}
    try:
        data = work / "data"
        size = make_dataset(data, args.size_mb, args.small_files)
        with MotoServer(log_path=work / "moto.log") as server:
            bucket = server.create_bucket("bench")
            results = {tool: bench_tool(tool, server, bucket, data, work, base_env)
                       for tool in ("airflow-backup", "restic")}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    if args.json:
        print(json.dumps({"dataset_bytes": size, "results": results}))
        return
    print(f"dataset: {mb:.0f} MB ({args.small_files} small files), moto S3 on 127.0.0.1, "
          f"{os.cpu_count()} cores")
    header = f"{'tool':<16}{'backup s':>10}{'MB/s':>8}{'2nd backup s':>14}" \
             f"{'restore s':>11}{'MB/s':>8}{'packs':>7}"
    print(header)
    print("-" * len(header))
    for tool, r in results.items():
        print(f"{tool:<16}{r['backup_s']:>10.1f}{mb / r['backup_s']:>8.1f}"
              f"{r['second_backup_s']:>14.1f}{r['restore_s']:>11.1f}"
              f"{mb / r['restore_s']:>8.1f}{int(r['packs']):>7}")


if __name__ == "__main__":
    main()
