"""Passwords come from the same places for every command: ``init`` on a terminal takes
AIRFLOW_BACKUP_PASSWORD(_FILE) before prompting (no lock-out by a mistyped prompt), and a
password file is read once, so a pipe or process substitution works."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from support.cli import FAST_KDF, run_cli

PW = "pw-from-the-environment"


def _on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout; return (status, output). A
    program that prompts waits for input it never gets and is killed at ``timeout``."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execve(argv[0], argv, env)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
    else:
        os.kill(pid, 9)  # still waiting for input after the timeout: it prompted
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, **extra)
    return env


def test_init_on_a_terminal_takes_the_password_from_the_environment(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    status, output = _on_a_terminal(
        [sys.executable, "-m", "airflow_backup.cli", "-r", str(repo), "init"],
        _env(AIRFLOW_BACKUP_PASSWORD=PW), timeout=30)
    assert status == 0, output
    assert "enter" not in output.lower(), output  # no prompt
    assert run_cli(repo, "snapshots", password=PW).returncode == 0


def test_init_on_a_terminal_takes_the_password_file(tmp_path: Path) -> None:
    repo, pwfile = tmp_path / "repo", tmp_path / "pw"
    pwfile.write_text(PW + "\n")
    status, output = _on_a_terminal(
        [sys.executable, "-m", "airflow_backup.cli", "-r", str(repo), "init"],
        _env(AIRFLOW_BACKUP_PASSWORD_FILE=str(pwfile)), timeout=30)
    assert status == 0, output
    assert run_cli(repo, "snapshots", password=PW).returncode == 0


def test_a_password_file_that_is_a_pipe_is_read_once(tmp_path: Path) -> None:
    repo, data = tmp_path / "repo", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    assert run_cli(repo, "init", password=PW).returncode == 0
    cli = f"{sys.executable} -m airflow_backup.cli -r {repo}"
    for command in (f"backup {data}", "snapshots", "check"):
        proc = subprocess.run(
            ["bash", "-c", f"{cli} --password-file <(printf %s {PW}) {command}"],
            env=_env(), capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, (command, proc.stderr)
