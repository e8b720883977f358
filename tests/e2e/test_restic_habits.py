"""A restic user's environment and habits carry over: RESTIC_REPOSITORY_FILE,
RESTIC_PASSWORD_COMMAND, ``-q`` printing nothing for a backup that worked, ``version``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from support.cli import run_cli
from support.tools import require_tool

PW = "habit-pw"


def test_repository_file_password_command_and_a_quiet_backup(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello\n")
    assert run_cli(repo, "init", password=PW).returncode == 0
    where = tmp_path / "repository.txt"
    where.write_text(f"{repo}\n")
    env = {"RESTIC_REPOSITORY_FILE": str(where), "RESTIC_PASSWORD_COMMAND": f"echo {PW}"}
    quiet = run_cli(None, "backup", "-q", str(data), password=None, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == b"" and quiet.stderr == b""  # as `restic backup -q`
    loud = run_cli(None, "backup", str(data), password=None, env=env)
    assert b"snapshot " in loud.stdout and b" saved" in loud.stdout
    listed = run_cli(None, "snapshots", "--json", password=None, env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2
    # The same variables drive restic itself on the same repository.
    restic = require_tool("restic")
    proc = subprocess.run([restic, "snapshots", "--json"], capture_output=True, timeout=120,
                          env={"PATH": str(Path(shutil.which("sh") or "/bin/sh").parent),
                               "HOME": str(tmp_path), **env}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2
    missing = run_cli(None, "snapshots", password=None,
                      env={"RESTIC_REPOSITORY_FILE": str(tmp_path / "nope")})
    assert missing.returncode == 1
    assert missing.stderr.decode() == (f"Fatal: cannot read repository file {tmp_path}/nope: "
                                       "No such file or directory\n")


def test_version_in_restics_words() -> None:
    out = run_cli(None, "version", password=None)
    assert out.returncode == 0
    assert out.stdout.decode().startswith("airflow-backup ") and b" compiled with Python " \
        in out.stdout
    doc = json.loads(run_cli(None, "version", "--json", password=None).stdout)
    assert doc["message_type"] == "version" and doc["version"] and doc["go_os"]
