"""Fault drills through the CLI: transient failures are absorbed (and logged), permanent ones
fail fast with a clear message and leave no snapshot.

Faults come from AIRFLOW_BACKUP_FAULTS (storage/faults.py), which wraps the primary
repository's store below the retry wrapper, exactly as a flaky network or store would.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from support.cli import ok as _ok
from support.cli import run_cli
from support.moto import MotoServer
from support.tools import run_restic
from support.trees import compare_trees, restored_path

PW = "secret-pw"
FAST_RETRY = ["-o", "retry_base_delay=0.02", "-o", "retry_max_delay=0.5",
              "-o", "retry_attempts=12"]




def _make_dataset(root: Path, total: int, files: int = 20) -> None:
    """``total`` bytes of incompressible data in ``files`` files, plus a few small ones."""
    root.mkdir()
    size = total // files
    for i in range(files):
        (root / f"part-{i:03d}.bin").write_bytes(os.urandom(size))
    (root / "notes.txt").write_text("two hundred megabytes of random data\n")


@pytest.mark.slow
@pytest.mark.restic
def test_200mb_backup_with_20pct_transient_failures_and_50ms_latency(
    tmp_path: Path, restic_bin: str
) -> None:
    src = tmp_path / "src"
    _make_dataset(src, 200 * 1000 * 1000)
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    # Every call sleeps 50 ms; 20 % of calls fail; of the failing saves, 30 % leave a
    # truncated file behind and 30 % stored everything but "lost the reply".
    faults = {"AIRFLOW_BACKUP_FAULTS": "failure_rate=0.2,latency=0.05,truncate_writes=0.3,"
                                       "lost_replies=0.3,seed=20240601"}
    started = time.monotonic()
    backup = run_cli(repo, *FAST_RETRY, "--json", "backup", str(src), env=faults)
    backup_s = time.monotonic() - started
    _ok(backup)
    stderr = backup.stderr.decode()
    retries = [json.loads(line) for line in stderr.splitlines()
               if '"message_type": "log"' in line and "retrying in" in line]
    assert retries, stderr[-3000:]
    # The log line names operation, file, attempt, delay and cause.
    assert re.search(r"storage \w+ \S+ failed \(attempt \d+ of 12\), retrying in \d+\.\d\d s: "
                     r".*injected fault", retries[0]["message"])
    assert any(r["message"].startswith("storage save data/") for r in retries)
    summary = json.loads(backup.stdout.decode().splitlines()[-1])
    assert summary["total_bytes_processed"] >= 200 * 1000 * 1000

    target = tmp_path / "restore"
    started = time.monotonic()
    restore = run_cli(repo, *FAST_RETRY, "restore", "latest", "--target", str(target),
                      env=faults)
    restore_s = time.monotonic() - started
    _ok(restore)
    read_retries = restore.stderr.decode().count("retrying in")
    assert read_retries > 0
    assert compare_trees(src, restored_path(target, src)) == []
    # Truncated and duplicated writes were cleaned up: restic finds nothing wrong.
    check = run_restic(repo, "check", "--read-data", password=PW, restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout
    print(f"\n200 MB with faults: backup {backup_s:.1f} s ({len(retries)} retries), "
          f"restore {restore_s:.1f} s ({read_retries} retries)")


def _snapshot_ids(repo: str | Path, env: dict[str, str] | None = None) -> list[str]:
    listed = run_cli(repo, "--json", "snapshots", env=env)
    _ok(listed)
    return [s["id"] for s in json.loads(listed.stdout)]


def test_permanent_failure_fails_fast_with_clear_message_and_no_snapshot(
    tmp_path: Path, small_tricky_tree: object
) -> None:
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    started = time.monotonic()
    # The first two writes (the lock, a pack) succeed, then the store refuses everything.
    proc = run_cli(repo, "backup", str(small_tricky_tree.root),  # type: ignore[attr-defined]
                   env={"AIRFLOW_BACKUP_FAULTS": "permanent=1,fail_after_writes=2"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 5.0
    err = proc.stderr.decode()
    assert re.search(r"^Fatal: save \S+: injected fault", err, re.M), err
    assert "retrying" not in err
    assert _snapshot_ids(repo) == []


def test_permanent_failure_on_s3_fails_fast(
    tmp_path: Path, small_tricky_tree: object, moto_server: MotoServer, s3_bucket: str
) -> None:
    url = f"s3://{s3_bucket}/repo"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    _ok(run_cli(url, "init", env=env))
    started = time.monotonic()
    proc = run_cli(url, "backup", str(small_tricky_tree.root),  # type: ignore[attr-defined]
                   env={**env, "AIRFLOW_BACKUP_FAULTS": "permanent=1,fail_after_writes=3"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 5.0
    assert b"injected fault" in proc.stderr
    assert _snapshot_ids(url, env) == []
    # A deleted bucket is permanent too: no retries, a message that says what is wrong.
    moto_server.delete_bucket(s3_bucket)
    started = time.monotonic()
    gone = run_cli(url, "backup", str(small_tricky_tree.root), env=env)  # type: ignore[attr-defined]
    assert time.monotonic() - started < 5.0
    assert gone.returncode == 1
    assert b"bucket or container does not exist (NoSuchBucket)" in gone.stderr, gone.stderr
    assert b"retrying" not in gone.stderr


def test_exhausted_retries_fail_within_the_time_budget(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    started = time.monotonic()
    proc = run_cli(repo, "-o", "retry_attempts=100", "-o", "retry_base_delay=0.1",
                   "-o", "retry_max_time=2", "snapshots",
                   env={"AIRFLOW_BACKUP_FAULTS": "failure_rate=1,operations=list"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert elapsed < 6.0
    err = proc.stderr.decode()
    assert "retrying in" in err
    assert re.search(r"Fatal: list \w+/: gave up after \d+ attempt\(s\) in \d", err), err
