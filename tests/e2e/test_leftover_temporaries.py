"""Killed runs leave ``.tmp-*`` files (pack and index writes cut short): ``check`` reports
them and ``prune`` removes them — only those old enough not to be a write in progress."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from support.cli import run_cli

PW = "temporaries-pw"


def test_check_reports_and_prune_removes_leftover_temporary_files(tmp_path: Path) -> None:
    data, repo = tmp_path / "data", tmp_path / "repo"
    data.mkdir()
    (data / "f").write_text("x")
    assert run_cli(repo, "init", password=PW).returncode == 0
    assert run_cli(repo, "backup", str(data), password=PW).returncode == 0
    old = repo / "data" / "ab" / ".tmp-abcdef-123456"
    old.parent.mkdir(exist_ok=True)
    old.write_bytes(os.urandom(1000))
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    fresh = repo / "index" / ".tmp-fedcba-654321"  # a write that may still be running
    fresh.write_bytes(b"partial")
    check = run_cli(repo, "check", password=PW)
    assert check.returncode == 0, check.stderr
    assert b"1 temporary file(s) left by interrupted writes" in check.stderr
    prune = run_cli(repo, "--json", "prune", password=PW)
    assert prune.returncode == 0, prune.stderr
    summary = json.loads(prune.stdout.splitlines()[-1])
    assert summary["temporaries_removed"] == ["data/ab/.tmp-abcdef-123456"]
    assert not old.exists() and fresh.exists()
    assert run_cli(repo, "check", "--read-data", password=PW).returncode == 0
