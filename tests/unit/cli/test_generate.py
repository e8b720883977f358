"""``generate``: completion scripts and man pages come from the parser itself — every verb,
global flag and verb flag is there, the bash script completes in a real bash, the man pages
render with man(1), zsh and fish accept their scripts."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from airflow_backup.cli.main import build_parser, main
from airflow_backup.cli.manpage import roff_escape
from support.tools import require_tool


def _verb_parsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings
            if a.help != argparse.SUPPRESS]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    (out / "man").mkdir()
    status = main(["generate", "--bash-completion", str(out / "airflow-backup.bash"),
                   "--zsh-completion", str(out / "_airflow-backup"),
                   "--fish-completion", str(out / "airflow-backup.fish"),
                   "--man", str(out / "man")])
    assert status == 0
    return out


def _bash_complete(script: Path, words: list[str]) -> list[str]:
    bash = require_tool("bash")
    array = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    proc = subprocess.run(
        [bash, "--norc", "--noprofile", "-c",
         f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; "
         "_airflow_backup; echo \"${COMPREPLY[@]}\""],
        capture_output=True, text=True, timeout=60, check=False, cwd=script.parent)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.split()


@pytest.mark.parametrize(("words", "expected"), [
    (["airflow-backup", "sna"], ["snapshots"]),
    (["airflow-backup", "snapshots", "--com"], ["--compact"]),
    # A global flag and its value before the verb are skipped over.
    (["airflow-backup", "-r", "/srv/backup", "--limit-upload", "100", "snapshots", "--com"],
     ["--compact"]),
    (["airflow-backup", "--limit-"], ["--limit-download", "--limit-upload"]),
    (["airflow-backup", "backup", "--limit-up"], ["--limit-upload"]),  # global after the verb
    (["airflow-backup", "gen"], ["generate"]),
    (["airflow-backup", "generate", "--bash"], ["--bash-completion"]),
    (["airflow-backup", "pg", "restore-"], ["restore-wal"]),
    (["airflow-backup", "pg", "restore", "--target-a"], ["--target-action"]),
    (["airflow-backup", "stats", "--mode", "r"], ["raw-data", "restore-size"]),
    (["airflow-backup", "list", "sn"], ["snapshots"]),  # a positional's choices
])
def test_bash_completes_verbs_flags_and_choices(generated: Path, words: list[str],
                                                expected: list[str]) -> None:
    assert sorted(_bash_complete(generated / "airflow-backup.bash", words)) == expected


def test_bash_offers_every_verb_and_every_flag_of_each(generated: Path) -> None:
    script = generated / "airflow-backup.bash"
    verbs = _verb_parsers()
    assert sorted(_bash_complete(script, ["airflow-backup", ""])) == sorted(verbs)
    top = _bash_complete(script, ["airflow-backup", "-"])
    assert {"--repo", "--limit-upload", "--limit-download", "--json"} <= set(top)
    for verb in ("backup", "restore", "forget", "generate"):
        offered = set(_bash_complete(script, ["airflow-backup", verb, "-"]))
        assert set(_flags(verbs[verb])) <= offered, verb


def _render(page: Path) -> str:
    man = require_tool("man")
    proc = subprocess.run([man, "--warnings", "-l", str(page)], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "MANWIDTH": "2000", "MANROFFOPT": "-rHY=0",
                               "MANPAGER": "cat", "PAGER": "cat"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no roff warnings
    return proc.stdout


def test_a_man_page_per_verb_naming_every_flag(generated: Path) -> None:
    pages = generated / "man"
    verbs = _verb_parsers()
    assert sorted(p.name for p in pages.iterdir()) == sorted(
        ["airflow-backup.1", *(f"airflow-backup-{v}.1" for v in verbs)])
    main_page = _render(pages / "airflow-backup.1")
    for verb in verbs:
        assert f"airflow-backup-{verb}(1)" in main_page
    for verb, parser in verbs.items():
        text = _render(pages / f"airflow-backup-{verb}.1")
        assert text.startswith(f"AIRFLOW-BACKUP-{verb.upper()}(1)")
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "GLOBAL OPTIONS",
                        "EXAMPLES", "EXIT STATUS"):
            assert f"\n{section}\n" in text, (verb, section)
        for flag in _flags(parser):
            assert flag in text, (verb, flag)
    pg = _render(pages / "airflow-backup-pg.1")
    assert "airflow-backup pg basebackup" in pg and "--target-time" in pg


def test_roff_escaping() -> None:
    assert roff_escape(".TH x\n'quote\na-b \\ c…") == (
        "\\&.TH x\n\\&'quote\na\\-b \\e c\\[u2026]")


def test_zsh_and_fish_accept_their_scripts(generated: Path) -> None:
    zsh = require_tool("zsh")
    proc = subprocess.run([zsh, "-n", str(generated / "_airflow-backup")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    zsh_text = (generated / "_airflow-backup").read_text()
    assert zsh_text.startswith("#compdef airflow-backup\n")
    for verb, parser in _verb_parsers().items():
        assert f"'{verb}:" in zsh_text
        for flag in _flags(parser):
            assert flag + "[" in zsh_text, (verb, flag)
    fish = require_tool("fish")
    script = generated / "airflow-backup.fish"
    done = subprocess.run(
        [fish, "--no-config", "-c",
         f"source {script}; complete -C 'airflow-backup sna'; "
         "complete -C 'airflow-backup snapshots --com'; complete -C 'airflow-backup --limit-u'"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    words = [ln.split("\t")[0] for ln in done.stdout.splitlines()]
    assert words == ["snapshots", "--compact", "--limit-upload"]


def test_dash_writes_one_script_to_stdout_and_nothing_else(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--bash-completion", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# bash completion for airflow-backup")
    assert "complete -o default -F _airflow_backup airflow-backup" in out
    assert "writing" not in out


def test_generate_without_a_target_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate"]) == 1
    assert "nothing to do" in capsys.readouterr().err
