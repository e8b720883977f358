"""S3 (a moto server on 127.0.0.1): our backup and restore of the tricky tree are exact, and the
real restic opens the same repository as ``s3:http://127.0.0.1:PORT/bucket/prefix``, checks it
with --read-data and restores it; we read what restic wrote there too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import ok as _ok
from support.cli import run_cli
from support.moto import MotoServer
from support.tools import restic_version, run_restic
from support.trees import TreeSpec, compare_trees, restored_path

pytestmark = [pytest.mark.restic]

PW = "secret-pw"




@pytest.mark.slow
def test_s3_tricky_tree_exact_and_restic_checks_and_restores(
    tmp_path: Path, tricky_tree: TreeSpec, restic_bin: str, moto_server: MotoServer,
    s3_bucket: str,
) -> None:
    url = f"s3://{s3_bucket}/backups/airflow"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    _ok(run_cli(url, "init", env=env))
    _ok(run_cli(url, "backup", str(tricky_tree.root), "--tag", "s3", env=env))
    # restic's layout in the bucket: config, keys/, data/xx/, index/, snapshots/.
    keys = moto_server.list_keys(s3_bucket, "backups/airflow/")
    assert "backups/airflow/config" in keys
    assert any(k.startswith("backups/airflow/data/") and k.count("/") == 4 for k in keys)
    assert any(k.startswith("backups/airflow/snapshots/") for k in keys)
    assert not any(k.startswith("backups/airflow/locks/") for k in keys)

    ours = tmp_path / "our-restore"
    _ok(run_cli(url, "restore", "latest", "--target", str(ours), env=env))
    assert compare_trees(tricky_tree.root, restored_path(ours, tricky_tree.root)) == []

    restic_repo = moto_server.restic_url(s3_bucket, "backups/airflow")
    check = run_restic(restic_repo, "check", "--read-data", password=PW, restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout
    target = tmp_path / "restic-restore"
    run_restic(restic_repo, "restore", "latest", "--target", str(target), password=PW,
               restic_bin=restic_bin)
    lossy = restic_version(restic_bin) < (0, 16, 0)
    assert compare_trees(tricky_tree.root, restored_path(target, tricky_tree.root),
                         lossy_symlink_targets=lossy) == []


@pytest.mark.slow
def test_restic_s3_spelling_opens_the_same_repository(
    tmp_path: Path, small_tricky_tree: TreeSpec, restic_bin: str, moto_server: MotoServer,
    s3_bucket: str,
) -> None:
    """restic writes with its own URL; we read it with restic's URL and with s3://."""
    restic_repo = moto_server.restic_url(s3_bucket, "r")
    run_restic(restic_repo, "init", password=PW, restic_bin=restic_bin)
    run_restic(restic_repo, "backup", str(small_tricky_tree.root), password=PW,
               restic_bin=restic_bin)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    theirs = json.loads(run_restic(restic_repo, "snapshots", "--json", password=PW,
                                   restic_bin=restic_bin).stdout)
    for url in (restic_repo, f"s3://{s3_bucket}/r"):
        listed = run_cli(url, "--json", "snapshots", env=env)
        _ok(listed)
        assert [s["id"] for s in json.loads(listed.stdout)] == [s["id"] for s in theirs]
    target = tmp_path / "restore"
    _ok(run_cli(restic_repo, "restore", "latest", "--target", str(target), env=env))
    lossy = restic_version(restic_bin) < (0, 16, 0)
    assert compare_trees(small_tricky_tree.root, restored_path(target, small_tricky_tree.root),
                         lossy_symlink_targets=lossy) == []
