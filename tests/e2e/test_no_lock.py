"""A read-only repository (read-only media, another user's files) can be listed, checked and
restored with ``--no-lock``; without it, the error says so; commands that change the
repository refuse ``--no-lock``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.cli import FAST_KDF, run_cli

PW = "no-lock-pw"


def _unprivileged(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI without the capabilities that let root write into a read-only tree."""
    cmd = [sys.executable, "-m", "airflow_backup.cli", *args]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_BACKUP_")}
    env.update(AIRFLOW_BACKUP_PASSWORD=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF)
    return subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=120)


def test_a_read_only_repository_is_read_with_no_lock(tmp_path: Path) -> None:
    data, repo = tmp_path / "data", tmp_path / "repo"
    data.mkdir()
    (data / "f.txt").write_text("on read-only media\n")
    assert run_cli(repo, "init", password=PW).returncode == 0
    assert run_cli(repo, "backup", str(data), password=PW).returncode == 0
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        locked = _unprivileged("-r", str(repo), "check")
        assert locked.returncode == 1
        assert b"--no-lock" in locked.stderr and len(locked.stderr.splitlines()) == 1, \
            locked.stderr
        assert _unprivileged("-r", str(repo), "--no-lock", "snapshots").returncode == 0
        check = _unprivileged("-r", str(repo), "--no-lock", "check", "--read-data")
        assert check.returncode == 0, check.stderr
        target = tmp_path / "restored"
        r = _unprivileged("-r", str(repo), "--no-lock", "restore", "latest", "--target",
                          str(target))
        assert r.returncode == 0, r.stderr
        assert (target / str(data).lstrip("/") / "f.txt").read_text() == "on read-only media\n"
        refused = _unprivileged("-r", str(repo), "--no-lock", "prune")
        assert refused.returncode == 1 and b"without --no-lock" in refused.stderr
    finally:
        for path in [repo, *repo.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
