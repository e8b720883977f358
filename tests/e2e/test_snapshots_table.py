"""``snapshots`` prints restic 0.14's table byte for byte: its padded Host/Tags columns and
ruler, ``--compact`` (ID, Time, Host, Tags: a line per tag, no Paths), a blank line between
snapshots once one lists several paths, and with ``-g`` a heading naming only what the group
has and a footer per group. restic 0.14 prints groups in Go's random map order, so groups
are compared as a set."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from support.cli import run_cli
from support.tools import require_tool

PW = "table-pw"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("snapshots-table")
    for name in ("a", "b"):
        (root / name).mkdir()
        (root / name / "f").write_text(name)
    repo = root / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    for argv in ([str(root / "a")], [str(root / "a"), str(root / "b"), "--tag", "x,y"],
                 [str(root / "b"), "--tag", "a-much-longer-tag"]):
        made = run_cli(repo, "backup", *argv, password=PW)
        assert made.returncode == 0, made.stderr
    return repo


def _groups(text: str) -> list[str]:
    """Split the output after each group's footer (``N snapshots``)."""
    blocks, current = [], ""
    for line in text.splitlines(keepends=True):
        current += line
        if re.fullmatch(r"\d+ snapshots\n", line):
            blocks.append(current)
            current = ""
    assert current == ""
    return sorted(blocks)


@pytest.mark.parametrize("args", [[], ["--compact"], ["-c", "-g", "tags"], ["-g", "host"],
                                  ["-g", "host,paths"], ["--compact", "-g", "paths"],
                                  ["--tag", "x"]])
def test_snapshots_table_is_restics(repo: Path, args: list[str]) -> None:
    restic = require_tool("restic")
    ours = run_cli(repo, "snapshots", *args, password=PW)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run([restic, "-r", str(repo), "snapshots", *args],
                            env={"RESTIC_PASSWORD": PW, "HOME": str(repo.parent),
                                 "PATH": "/usr/bin:/bin", "TZ": "UTC"},
                            capture_output=True, text=True, timeout=120, check=True).stdout
    mine = run_cli(repo, "snapshots", *args, password=PW, env={"TZ": "UTC"}).stdout.decode()
    assert _groups(mine) == _groups(theirs)
    if "--compact" in args or "-c" in args:
        assert "ID        Time                 Host  Tags" in mine.splitlines()
        rows = [ln for ln in mine.splitlines() if not ln.startswith("snapshots for (")]
        assert not any("Paths" in ln or str(repo.parent) in ln for ln in rows)
