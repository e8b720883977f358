"""Start-up and exit of the CLI process (issue 26): a command line whose sub-command is
certain imports that command's module alone; any other builds the full parser as before;
the process ends without the interpreter's teardown, but a profiler still gets its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_backup.cli.commands import ALL_COMMANDS, COMMAND_MODULES
from airflow_backup.cli.main import build_parser, command_of
from support.cli import FAST_KDF, ok, run_cli


def test_command_modules_name_exactly_what_each_module_registers() -> None:
    for module in ALL_COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        module.register(sub)
        short = module.__name__.rsplit(".", 1)[1]
        assert {n: short for n in sub.choices} == {
            n: m for n, m in COMMAND_MODULES.items() if m == short}
    choices = next(a for a in build_parser()._actions
                   if isinstance(a, argparse._SubParsersAction)).choices
    assert list(choices) == list(COMMAND_MODULES)


@pytest.mark.parametrize(("argv", "command"), [
    (["backup", "/data"], "backup"),
    (["-r", "s3://b/p", "backup", "/data"], "backup"),
    (["--repo=backup", "init"], "init"),  # a value that looks like a command
    (["-rbackup", "check"], "check"),
    (["-o", "init", "backup"], "backup"),
    (["-vv", "--json", "--no-cache", "snapshots"], "snapshots"),
    (["-q", "-v", "key", "list"], "key"),
    (["--password-file", "pw", "--retry-lock", "5", "list", "keys"], "list"),
    # Anything uncertain gets the full parser: abbreviations, help, unknown words, generate.
    (["--pass", "init", "backup"], None),
    (["--cache", "init", "backup"], None),
    (["--help"], None),
    (["--version"], None),
    (["-r"], None),
    (["bakup", "/data"], None),
    (["generate", "--man", "/tmp/x"], None),
    ([], None),
])
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def _modules_loaded(argv: list[str]) -> list[str]:
    code = ("import sys, json\n"
            "from airflow_backup.cli.main import build_parser, command_of\n"
            f"build_parser(command_of({argv!r})).parse_args({argv!r})\n"
            "print(json.dumps(sorted(m for m in sys.modules\n"
            "                        if m.startswith('airflow_backup.cli.commands.'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_a_backup_imports_no_other_command() -> None:
    assert _modules_loaded(["-r", "s3://b/p", "backup", "/data"]) == [
        "airflow_backup.cli.commands.backup"]
    assert len(_modules_loaded(["--no-cache", "generate", "--man", "x"])) >= len(
        COMMAND_MODULES)


def test_errors_and_help_are_those_of_the_full_parser(tmp_path: Path) -> None:
    typo = run_cli(tmp_path / "repo", "bakup", str(tmp_path))
    assert typo.returncode == 1
    assert b"unknown command 'bakup': did you mean 'backup'?" in typo.stderr
    helped = run_cli(None, "--help")
    ok(helped)
    assert b"snapshots" in helped.stdout and b"runbook" in helped.stdout
    sub = run_cli(None, "backup", "--help")
    ok(sub)
    assert b"--exclude" in sub.stdout


def test_output_is_complete_and_a_profiler_still_writes_its_figures(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ok(run_cli(repo, "init"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello\n")
    ok(run_cli(repo, "backup", str(data)))
    listed = run_cli(repo, "--json", "snapshots")
    ok(listed)
    assert len(json.loads(listed.stdout)) == 1  # flushed before the process ended
    prof = tmp_path / "cli.prof"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_PASSWORD="secret-pw", AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF)
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m",
                           "airflow_backup.cli", "-r", str(repo), "snapshots"],
                          env=env, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert prof.stat().st_size > 0
