"""Several writers at once on S3, unlock, and fail-safe fallback repositories (CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import FAST_KDF, run_cli
from support.cli import ok as _ok
from support.moto import MotoServer
from support.tools import run_restic
from support.trees import compare_trees, restored_path

PW = "secret-pw"




def _tree(root: Path, seed: int, size: int = 3 << 20) -> Path:
    root.mkdir(parents=True)
    rnd = __import__("random").Random(seed)
    (root / "big.bin").write_bytes(rnd.randbytes(size))
    for i in range(30):
        (root / f"small-{i}.txt").write_bytes(b"%d-%d\n" % (seed, i) * (i + 1))
    (root / "shared.txt").write_bytes(b"identical in every tree\n" * 1000)
    return root


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, AIRFLOW_BACKUP_PASSWORD=PW,
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


@pytest.mark.slow
@pytest.mark.restic
def test_four_concurrent_backups_into_one_s3_repository(
    tmp_path: Path, moto_server: MotoServer, s3_bucket: str, restic_bin: str
) -> None:
    url = f"s3://{s3_bucket}/shared"
    env = _cli_env(tmp_path)
    _ok(run_cli(url, "init", env=env))
    trees = [_tree(tmp_path / f"worker-{i}", seed=i, size=20 << 20) for i in range(4)]
    # 300 ms per storage call, as on a distant object store, so that each backup holds its
    # lock for a few seconds; the lock files in the bucket show how many overlap.
    slow = {**env, "AIRFLOW_BACKUP_FAULTS": "latency=0.3"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "airflow_backup.cli", "-r", url, "--json", "backup",
         str(t), "--tag", f"worker-{i}"],
        env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        for i, t in enumerate(trees)]
    most_locks = 0
    deadline = time.monotonic() + 300
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        most_locks = max(most_locks, len(moto_server.list_keys(s3_bucket, "shared/locks/")))
        time.sleep(0.05)
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    assert most_locks == 4  # all four writers held the repository at the same time
    listed = json.loads(run_cli(url, "--json", "snapshots", env=env).stdout)
    assert sorted(t for s in listed for t in s["tags"]) == [f"worker-{i}" for i in range(4)]
    assert moto_server.list_keys(s3_bucket, "shared/locks/") == []
    restic_repo = moto_server.restic_url(s3_bucket, "shared")
    check = run_restic(restic_repo, "check", "--read-data", password=PW, restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout
    target = tmp_path / "restore"
    _ok(run_cli(url, "restore", "latest", "--tag", "worker-2", "--target", str(target),
                env=env))
    assert compare_trees(trees[2], restored_path(target, trees[2])) == []


def test_exclusive_lock_refuses_then_waits_while_a_backup_holds_a_lock(
    tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    """Maintenance (an exclusive lock) refuses while a writer holds its lock, and with a
    retry waits until the writer is done."""
    from airflow_backup.errors import RepositoryLocked
    from airflow_backup.repository.keys import KdfParams
    from airflow_backup.repository.repo import Repository
    from airflow_backup.storage.compose import open_repository_storage

    storage = open_repository_storage(f"s3://{s3_bucket}/locks")
    repo = Repository.init(storage, PW, kdf=KdfParams(1024, 8, 1))
    other = Repository.open(open_repository_storage(f"s3://{s3_bucket}/locks"), PW)
    with repo.lock(exclusive=False):
        with pytest.raises(RepositoryLocked, match="non-exclusive"), other.lock(exclusive=True):
            pass
        with other.lock(exclusive=False):
            pass  # writers coexist
    started = time.monotonic()
    with other.lock(exclusive=True, retry_seconds=5):
        pass
    assert time.monotonic() - started < 5


def test_unlock_removes_stale_locks_and_remove_all_warns(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    # A lock from a process that is gone (stale) and one from a live process (this one).
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True)
    dead_pid = int(dead.stdout)
    _write_lock(repo, dead_pid)
    _write_lock(repo, os.getpid())
    locks = repo / "locks"
    assert len(list(locks.iterdir())) == 2
    out = run_cli(repo, "unlock")
    _ok(out)
    assert b"successfully removed 1 lock(s)" in out.stdout
    assert len(list(locks.iterdir())) == 1
    out = run_cli(repo, "unlock", "--remove-all")
    _ok(out)
    assert b"removing ALL locks" in out.stderr
    assert b"successfully removed 1 lock(s)" in out.stdout
    assert list(locks.iterdir()) == []


def _write_lock(repo: Path, pid: int) -> None:
    """Write a non-exclusive lock for ``pid`` on this host, as the engine would."""
    from airflow_backup.repository.locks import RepoLock
    from airflow_backup.repository.repo import Repository
    from airflow_backup.storage.local import LocalStorage

    r = Repository.open(LocalStorage(repo), PW)
    lock = RepoLock(r.storage, r.key, r.version, exclusive=False)
    real_getpid = os.getpid
    try:
        os.getpid = lambda: pid  # type: ignore[assignment]
        lock._write()
    finally:
        os.getpid = real_getpid  # type: ignore[assignment]


@pytest.mark.slow
def test_fallback_when_primary_bucket_is_deleted(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    primary_bucket = moto_server.create_bucket()
    fallback_bucket = moto_server.create_bucket()
    primary = f"s3://{primary_bucket}/repo"
    fallback = f"s3://{fallback_bucket}/repo"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    fb_pw = tmp_path / "fallback-pw"
    fb_pw.write_text("fallback-secret\n")
    _ok(run_cli(primary, "init", env=env))
    _ok(run_cli(fallback, "init", password="fallback-secret", env=env))
    src = _tree(tmp_path / "src", seed=9, size=1 << 20)
    fb_env = {**env, "AIRFLOW_BACKUP_FALLBACK_PASSWORD_FILE": str(fb_pw)}

    # A healthy primary: a normal, non-degraded backup.
    ok = run_cli(primary, "--json", "backup", str(src), "--fallback-repo", fallback,
                 env=fb_env)
    _ok(ok)
    summary = json.loads(ok.stdout.decode().splitlines()[-1])
    assert summary["degraded"] is False
    assert summary["repository"] == primary

    moto_server.delete_bucket(primary_bucket)
    started = time.monotonic()
    degraded = run_cli(primary, "--json", "backup", str(src), "--fallback-repo", fallback,
                       env=fb_env)
    assert time.monotonic() - started < 20
    _ok(degraded)
    summary = json.loads(degraded.stdout.decode().splitlines()[-1])
    assert summary["degraded"] is True
    assert summary["repository"] == fallback
    assert "NoSuchBucket" in summary["degraded_reason"]
    assert b"fallback-secret" not in degraded.stderr + degraded.stdout

    listed = run_cli(fallback, "--json", "snapshots", password="fallback-secret", env=env)
    _ok(listed)
    snaps = json.loads(listed.stdout)
    assert [s["id"] for s in snaps] == [summary["snapshot_id"]]
    marker = snaps[0]["airflow_backup"]["degraded"]
    assert marker["primary"] == primary
    assert "NoSuchBucket" in marker["reasons"][0]
    target = tmp_path / "restore"
    _ok(run_cli(fallback, "restore", "latest", "--target", str(target),
                password="fallback-secret", env=env))
    assert compare_trees(src, restored_path(target, src)) == []

    # Human output says DEGRADED on stderr.
    human = run_cli(primary, "backup", str(src), "--fallback-repo", fallback, env=fb_env)
    _ok(human)
    assert b"DEGRADED" in human.stderr


def test_all_repositories_failing_is_an_error(tmp_path: Path, moto_server: MotoServer) -> None:
    src = _tree(tmp_path / "src", seed=3, size=1000)
    missing = f"s3://{moto_server.create_bucket()}/never-initialised"
    proc = run_cli(tmp_path / "no-repo", "backup", str(src), "--fallback-repo", missing,
                   env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "no repository could take the backup" in err
    assert "never-initialised" in err
