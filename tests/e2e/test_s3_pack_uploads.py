"""Backups to S3 upload several packs at once (issue 26): what they write is a repository
restic checks and restores, and a pack upload that fails fails the backup cleanly (no
snapshot; every index file names only packs that exist)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.cli import ok, run_cli
from support.moto import MotoServer
from support.tools import run_restic
from support.trees import compare_trees, restored_path

PW = "secret-pw"


def _dataset(root: Path) -> Path:
    """~40 MB of incompressible data (three packs or more) and a few hundred small files."""
    (root / "small").mkdir(parents=True)
    for i in range(4):
        (root / f"big-{i}.bin").write_bytes(os.urandom(10 * 1000 * 1000 + i))
    for i in range(300):
        (root / "small" / f"f{i:03d}.txt").write_bytes(f"small file {i}\n".encode() * (i + 1))
    return root


@pytest.mark.restic
def test_s3_backup_with_concurrent_pack_uploads_checks_and_restores_with_restic(
        tmp_path: Path, moto_server: MotoServer, s3_bucket: str, restic_bin: str) -> None:
    data = _dataset(tmp_path / "data")
    url = f"s3:{moto_server.endpoint}/{s3_bucket}/repo"
    env = {"AIRFLOW_BACKUP_CACHE_DIR": str(tmp_path / "cache")}
    ok(run_cli(url, "init", password=PW, env=env))
    ok(run_cli(url, "backup", str(data), password=PW, env=env))
    packs = moto_server.list_keys(s3_bucket, "repo/data/")
    assert len(packs) >= 4  # three or more data packs and a tree pack
    check = run_restic(url, "check", "--read-data", password=PW, restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout
    target = tmp_path / "restore"
    run_restic(url, "restore", "latest", "--target", str(target), password=PW,
               restic_bin=restic_bin)
    assert compare_trees(data, restored_path(target, data)) == []


@pytest.mark.restic
def test_a_failed_pack_upload_fails_the_s3_backup_and_leaves_no_snapshot(
        tmp_path: Path, moto_server: MotoServer, s3_bucket: str, restic_bin: str) -> None:
    data = _dataset(tmp_path / "data")
    url = f"s3:{moto_server.endpoint}/{s3_bucket}/repo"
    env = {"AIRFLOW_BACKUP_CACHE_DIR": str(tmp_path / "cache")}
    ok(run_cli(url, "init", password=PW, env=env))
    # The lock and two packs are stored; every later save fails for good, while other
    # uploads may still be running.
    proc = run_cli(url, "backup", str(data), password=PW,
                   env={**env, "AIRFLOW_BACKUP_FAULTS": "permanent=1,fail_after_writes=3"})
    assert proc.returncode == 1, proc.stderr
    assert b"injected fault" in proc.stderr
    listed = run_cli(url, "--json", "snapshots", password=PW, env=env)
    ok(listed)
    assert json.loads(listed.stdout) == []
    # Nothing half-written is listed: restic finds every indexed pack whole (packs stored
    # before the failure but never indexed are left for prune, as restic leaves them).
    check = run_restic(url, "check", "--read-data", password=PW, restic_bin=restic_bin,
                       check=False)
    assert check.returncode == 0, (check.stdout[-2000:], check.stderr[-2000:])
    # The lock was released: another backup goes through.
    ok(run_cli(url, "backup", str(data), password=PW, env=env))
