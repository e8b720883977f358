"""Every verb explains itself: a description and examples in --help, each example a command
line the real parser accepts; a mistyped verb or choice names the closest one."""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import sys

import pytest

from airflow_backup.cli.help_texts import VERB_HELP
from airflow_backup.cli.main import build_parser, main


def _verbs() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, __import__("argparse")
                                                            ._SubParsersAction))
    return sorted(action.choices)


def test_every_verb_has_a_description_and_examples() -> None:
    assert sorted(VERB_HELP) == _verbs()
    for verb, (description, examples) in VERB_HELP.items():
        assert len(description) > 40 and description.endswith("."), verb
        assert examples, verb


@pytest.mark.parametrize("verb", sorted(VERB_HELP))
def test_help_shows_them_and_every_example_parses(verb: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    text = out.getvalue()
    assert "examples:" in text and "exit status:" in text
    assert VERB_HELP[verb][0].split()[0] in text
    for example in VERB_HELP[verb][1]:
        argv = shlex.split(example)
        assert argv[0] == "airflow-backup" and verb in argv
        assert example in text
        args = build_parser().parse_args(argv[1:])  # exits (a test failure) if it does not parse
        assert args.command == verb


@pytest.mark.parametrize(("argv", "expected"), [
    (["snapshot"], "unknown command 'snapshot': did you mean 'snapshots'?"),
    (["restor", "latest"], "unknown command 'restor': did you mean 'restore'?"),
    (["key", "lst"], "unknown choice 'lst': did you mean 'list'?"),
    (["frobnicate"], "unknown command 'frobnicate' (choose from init, backup,"),
])
def test_a_typo_names_the_closest_choice_on_one_line(argv: list[str], expected: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_python_dash_m_airflow_backup_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "airflow_backup", "version"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("airflow-backup "), proc
