"""Trees of any depth restic can write: a 2,000-level directory tree (one-letter names under a
short directory, so that every absolute path stays within the system's PATH_MAX) is backed up,
listed, checked and restored by us, and checked and restored by restic."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import run_cli
from support.tools import require_tool, run_restic

PW = "deep-tree-pw"
DEPTH = 2_000

pytestmark = pytest.mark.slow


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short absolute path, so that 2,000 levels stay within PATH_MAX."""
    path = Path(tempfile.mkdtemp(prefix="dt", dir="/tmp"))
    yield path
    # shutil.rmtree recurses once per level (RecursionError at this depth); rm does not.
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _deep(root: Path) -> Path:
    """Make ``root/t/d/d/…/d/leaf.txt`` (DEPTH levels of ``d``) with relative paths."""
    cwd = os.getcwd()
    (root / "t").mkdir()
    os.chdir(root / "t")
    try:
        for _ in range(DEPTH):
            os.mkdir("d")
            os.chdir("d")
        Path("leaf.txt").write_text("deep\n")
    finally:
        os.chdir(cwd)
    return root / "t"


def test_a_2000_level_tree_backs_up_lists_checks_and_restores(short_dir: Path) -> None:
    restic = require_tool("restic")
    tree, repo = _deep(short_dir), short_dir / "r"
    assert run_cli(repo, "init", password=PW).returncode == 0
    backup = run_cli(repo, "backup", str(tree), password=PW)
    assert backup.returncode == 0, backup.stderr
    listing = run_cli(repo, "ls", "latest", password=PW)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.rstrip().endswith(b"/d/leaf.txt")
    check = run_cli(repo, "check", "--read-data", password=PW)
    assert check.returncode == 0, check.stderr
    assert run_restic(repo, "check", "--read-data", password=PW,
                      restic_bin=restic).returncode == 0
    for name, restore in (("ours", lambda t: run_cli(repo, "restore", "latest", "--target", t,
                                                   password=PW)),
                          ("restic", lambda t: run_restic(repo, "restore", "latest", "--target",
                                                          t, password=PW, restic_bin=restic))):
        target = short_dir / name[0]
        result = restore(str(target))
        assert result.returncode == 0, (name, result.stderr)
        leaf = os.path.join(str(target), *str(tree).strip("/").split("/"), *["d"] * DEPTH,
                            "leaf.txt")
        fd = os.open(str(target), os.O_RDONLY)
        try:
            # The absolute path is too long for one syscall: walk down with relative opens.
            rel = os.path.relpath(leaf, str(target))
            parts = rel.split("/")
            for part in parts[:-1]:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = nxt
            with os.fdopen(os.open(parts[-1], os.O_RDONLY, dir_fd=fd)) as f:
                assert f.read() == "deep\n", name
        finally:
            os.close(fd)
