"""A lock left by a process that died in a container (another PID namespace, where it was PID
1) is no endless loop: ``prune`` and ``unlock`` name it and say exactly what removes it, and
that command does."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_backup.repository.repo import Repository
from airflow_backup.repository.timefmt import format_time
from airflow_backup.repository.unpacked import save_json
from airflow_backup.storage.base import FileType
from airflow_backup.storage.local import LocalStorage
from support.cli import run_cli

PW = "container-lock-pw"


@pytest.mark.parametrize("pidns", ["", "pid:[1]"], ids=["older lock, PID 1", "other namespace"])
def test_a_container_lock_is_named_with_the_command_that_removes_it(
        tmp_path: Path, pidns: str) -> None:
    repo_dir = tmp_path / "repo"
    assert run_cli(repo_dir, "init", password=PW).returncode == 0
    repo = Repository.open(LocalStorage(str(repo_dir)), PW)
    lock: dict[str, object] = {
        "time": format_time(datetime.now(UTC)), "exclusive": False,
        "hostname": socket.gethostname(), "username": "app", "pid": 1, "uid": 0, "gid": 0}
    if pidns:
        lock["pidns"] = pidns
    save_json(repo.storage, repo.key, FileType.LOCK, lock, repo.version)
    prune = run_cli(repo_dir, "prune", password=PW)
    assert prune.returncode == 11
    assert b"another PID namespace" in prune.stderr
    assert b"airflow-backup unlock --remove-all" in prune.stderr
    unlock = run_cli(repo_dir, "unlock", password=PW)
    assert unlock.returncode == 0
    assert b"kept lock held by PID 1" in unlock.stderr and b"--remove-all" in unlock.stderr
    assert run_cli(repo_dir, "unlock", "--remove-all", password=PW).returncode == 0
    assert run_cli(repo_dir, "prune", password=PW).returncode == 0
