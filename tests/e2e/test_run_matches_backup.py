"""``run`` gives the same outcome as ``backup`` for the same data (one operations layer under
both): a partial backup exits 3 from both, a missing repository exits 10 from both after one
try, a lock held by another process makes only the retention step wait and retry (one
snapshot, success), and ``--no-cache --cache-dir`` are honoured by ``run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from airflow_backup.repository.repo import Repository
from airflow_backup.storage.local import LocalStorage
from support.cli import FAST_KDF, run_cli

PW = "run-vs-backup-pw"


def _config(tmp: Path, data: Path, repo: Path, **job: object) -> Path:
    cfg = {"repositories": {"main": {"url": str(repo), "password_env": "RUN_PW",
                                     "lock_wait": "0"}},
           "jobs": {"j": {"repository": "main", "sources": [str(data)],
                          "retry": {"attempts": 3, "initial_delay": 1, "multiplier": 1,
                                    "jitter": 0}, **job}}}
    path = tmp / "jobs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _data(tmp: Path) -> Path:
    d = tmp / "data"
    d.mkdir()
    (d / "ok.txt").write_text("readable\n")
    return d


def _results(stdout: bytes) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in stdout.decode().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("message_type") == "job_result"]


def _unprivileged(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI without the capabilities that let root read a 0000 file."""
    cmd = [sys.executable, "-m", "airflow_backup.cli", *args]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_BACKUP_")}
    full.update(AIRFLOW_BACKUP_PASSWORD=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, RUN_PW=PW,
                **env)
    return subprocess.run(cmd, env=full, capture_output=True, check=False, timeout=300)


def test_partial_backup_exits_3_from_backup_and_from_run(tmp_path: Path) -> None:
    data = _data(tmp_path)
    (data / "secret.txt").write_text("nobody may read this\n")
    (data / "secret.txt").chmod(0)
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    b = _unprivileged("-r", str(repo), "backup", str(data), env={})
    r = _unprivileged("--json", "run", str(_config(tmp_path, data, repo)), env={})
    assert b.returncode == 3, b.stderr
    assert r.returncode == 3, r.stderr
    (result,) = _results(r.stdout)
    assert result["status"] == "partial" and result["exit_code"] == 3
    assert "secret.txt" in json.dumps(result["warnings"])


def test_missing_repository_exits_10_from_backup_and_from_run_after_one_try(
        tmp_path: Path) -> None:
    data = _data(tmp_path)
    repo = tmp_path / "never-initialised"
    b = run_cli(repo, "backup", str(data), password=PW)
    started = time.monotonic()
    r = run_cli(None, "--json", "run", str(_config(tmp_path, data, repo)), env={"RUN_PW": PW})
    elapsed = time.monotonic() - started
    assert b.returncode == 10, b.stderr
    assert r.returncode == 10, r.stderr
    (result,) = _results(r.stdout)
    assert result["failed_step"] == "store" and result["attempts"] == 1
    assert result["error_type"] == "RepositoryNotFound"
    assert r.stderr.count(b"RepositoryNotFound") <= 1 and elapsed < 60


def test_a_held_lock_retries_only_retention_and_stores_one_snapshot(tmp_path: Path) -> None:
    """Another process's lock blocks the prune: the retention step fails, and only it is
    retried; the lock is released when ``run`` reports that failure (its JSON status line),
    so the retry succeeds however slow the machine is."""
    data = _data(tmp_path)
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    assert run_cli(repo, "backup", str(data), "--tag", "job=j", password=PW).returncode == 0
    other = Repository.open(LocalStorage(str(repo)), PW)
    lock = other.lock(exclusive=False)  # another process's shared lock blocks the prune
    lock.__enter__()
    config = _config(tmp_path, data, repo, retention={"keep_last": 1})
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, RUN_PW=PW)
    proc = subprocess.Popen([sys.executable, "-m", "airflow_backup.cli", "--json", "run",
                             str(config)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    held = True
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if held and line.startswith(b"{"):
                msg = json.loads(line)
                if msg.get("step") == "retention" and msg.get("state") == "failed":
                    lock.__exit__(None, None, None)
                    held = False
        _, err = proc.communicate(timeout=300)
    finally:
        if held:
            lock.__exit__(None, None, None)
        proc.kill()
    assert proc.returncode == 0, err
    (result,) = _results(b"".join(lines))
    steps = result["steps"]
    assert isinstance(steps, dict)
    assert steps["store"]["attempts"] == 1 and steps["retention"]["attempts"] >= 2
    snaps = json.loads(run_cli(repo, "--json", "snapshots", password=PW).stdout)
    assert len(snaps) == 1 and snaps[0]["id"] == result["snapshots"][0]  # type: ignore[index]


def test_run_honours_no_cache_and_cache_dir(tmp_path: Path) -> None:
    data = _data(tmp_path)
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    config = _config(tmp_path, data, repo)
    xdg, chosen = tmp_path / "xdg", tmp_path / "chosen"
    env = {"RUN_PW": PW, "XDG_CACHE_HOME": str(xdg)}
    r = run_cli(None, "--no-cache", "--cache-dir", str(chosen), "run", str(config), env=env)
    assert r.returncode == 0, r.stderr
    assert not xdg.exists() and not chosen.exists()
    r = run_cli(None, "--cache-dir", str(chosen), "run", str(config), env=env)
    assert r.returncode == 0, r.stderr
    assert not xdg.exists() and any(chosen.rglob("*"))
