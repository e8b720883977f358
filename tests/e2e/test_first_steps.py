"""A new user's first steps, exactly as the README prints them: the jobs block runs in an
empty directory and every command succeeds; `init --config` creates the repositories a
config names and keeps those that exist; a typo'd source path fails at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import FAST_KDF

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _readme_jobs_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "config sample" in b]
    return block


def _env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    launcher = bindir / "airflow-backup"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m airflow_backup \"$@\"\n")
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, PATH=f"{bindir}:{env['PATH']}",
               HOME=str(tmp_path / "home"))
    return env


def test_the_readme_jobs_block_runs_as_printed(tmp_path: Path) -> None:
    work = tmp_path / "fresh"
    work.mkdir()
    block = _readme_jobs_block()
    assert "init --config jobs.yaml" in block and "--demo-data" in block
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "created repository local" in proc.stdout
    assert (work / "RUNBOOK.md").is_file() and (work / "demo" / "jobs-repo" / "config").is_file()
    # init again keeps the repository (and checks the password opens it)
    again = subprocess.run(["airflow-backup", "init", "--config", "jobs.yaml"], cwd=work,
                           env={**_env(tmp_path), "DEMO_REPO_PASSWORD": "change-me"},
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "exists: kept" in again.stdout, again
    wrong = subprocess.run(["airflow-backup", "init", "--config", "jobs.yaml"], cwd=work,
                           env={**_env(tmp_path), "DEMO_REPO_PASSWORD": "typo"},
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 12 and len(wrong.stderr.splitlines()) == 1, wrong


def test_a_missing_source_path_fails_without_retrying(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    env = {**_env(tmp_path), "DEMO_REPO_PASSWORD": "pw"}
    sample = subprocess.run(["airflow-backup", "config", "sample"], cwd=work, env=env,
                            capture_output=True, text=True, check=True).stdout
    (work / "jobs.yaml").write_text(sample)  # no --demo-data: its sources do not exist
    subprocess.run(["airflow-backup", "init", "--config", "jobs.yaml"], cwd=work, env=env,
                   check=True, capture_output=True)
    proc = subprocess.run(["airflow-backup", "run", "jobs.yaml"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "FAILED in export after 1 attempt(s): SourceMissing" in proc.stdout, proc
    assert "retrying" not in proc.stderr


def test_the_jobs_config_is_found_as_borgmatic_finds_its_own(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    env = {**_env(tmp_path), "DEMO_REPO_PASSWORD": "pw",
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "AIRFLOW_BACKUP_DEMO_DIR": str(tmp_path / "demo")}

    def cli(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["airflow-backup", *argv], cwd=work, env={**env, **extra},
                              capture_output=True, text=True, timeout=300)

    nothing = cli("status")
    assert nothing.returncode == 1 and len(nothing.stderr.splitlines()) == 1
    assert "no jobs config file" in nothing.stderr and "/etc/airflow-backup/jobs.yaml" in \
        nothing.stderr
    sample = cli("config", "sample", "--demo-data")
    assert sample.returncode == 0
    home_config = tmp_path / "xdg" / "airflow-backup" / "jobs.yaml"
    home_config.parent.mkdir(parents=True)
    home_config.write_text(sample.stdout)
    assert cli("init", "--config", str(home_config)).returncode == 0
    ran = cli("run", "quickstart")  # the job named, the config found in ~/.config
    assert ran.returncode == 0, ran
    other = tmp_path / "elsewhere.conf"
    other.write_text(sample.stdout)
    assert cli("status", "-c", str(other), "quickstart").returncode == 0  # -c: any name
    assert cli("status", "quickstart", AIRFLOW_BACKUP_CONFIG=str(other)).returncode == 0
    missing = cli("status", "quickstart", AIRFLOW_BACKUP_CONFIG=str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr, missing
