"""Run the ``airflow-backup`` CLI as a real subprocess, with the password in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

__all__ = ["FAST_KDF", "ok", "ok_stdout", "one_line_error", "repo", "run_cli"]

#: Cheap scrypt parameters for keys made by tests (readers honour whatever a key file says).
FAST_KDF = "1024,8,1"


def run_cli(
    repo: Path | str | None,
    *args: str | os.PathLike[str] | bytes,
    password: str | None = "secret-pw",
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m airflow_backup.cli [-r REPO] ARGS...``; never raises on exit status.

    The password travels in AIRFLOW_BACKUP_PASSWORD (never in argv); restic's and our own
    repository/password variables from the caller's environment are dropped first.
    """
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    full_env["AIRFLOW_BACKUP_KDF_PARAMS"] = FAST_KDF
    if password is not None:
        full_env["AIRFLOW_BACKUP_PASSWORD"] = password
    if env:
        full_env.update(env)
    argv: list[str | bytes | os.PathLike[str]] = [sys.executable, "-m", "airflow_backup.cli"]
    if repo is not None:
        argv += ["-r", str(repo)]
    argv += list(args)
    return subprocess.run(argv, env=full_env, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    """Assert that a CLI run exited 0 (showing the tail of its output if not); return it."""
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def ok_stdout(proc: subprocess.CompletedProcess[bytes]) -> str:
    """Assert that a CLI run exited 0; return its standard output as text."""
    return ok(proc).stdout.decode()


def one_line_error(proc: subprocess.CompletedProcess[bytes], exit_code: int | None = None) -> str:
    """Assert that a CLI run failed with exactly one line on stderr and no traceback (and
    with ``exit_code`` when given); return that line."""
    if exit_code is not None:
        assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository initialised by the CLI (``init``) in the test's temp directory."""
    path = tmp_path / "repo"
    ok(run_cli(path, "init"))
    return path
