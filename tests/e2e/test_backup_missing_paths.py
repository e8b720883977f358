"""``backup`` of several paths where some are missing saves what exists, names the missing
ones and exits 3 — as current restic does (0.14 saves the same and exits 0); with every path
missing nothing is saved (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import run_cli
from support.tools import require_tool, run_restic

PW = "missing-paths-pw"


def test_missing_paths_are_named_and_the_rest_is_saved_like_restic(tmp_path: Path) -> None:
    restic = require_tool("restic")
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("kept\n")
    missing = tmp_path / "nonexistent"
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert run_cli(ours, "init", password=PW).returncode == 0
    run_restic(theirs, "init", password=PW, restic_bin=restic)
    r = run_cli(ours, "backup", str(data), str(missing), password=PW)
    t = run_restic(theirs, "backup", str(data), str(missing), password=PW, restic_bin=restic,
                   check=False)
    # restic 0.14 saves what exists and warns (exit 0); restic >= 0.17 exits 3, as we do.
    assert r.returncode == 3, r.stderr
    assert t.returncode in (0, 3), t.stderr
    assert len(json.loads(run_restic(theirs, "snapshots", "--json", password=PW,
                                     restic_bin=restic).stdout)) == 1
    assert str(missing).encode() in r.stderr
    (snap,) = json.loads(run_cli(ours, "--json", "snapshots", password=PW).stdout)
    listing = run_cli(ours, "ls", snap["id"], password=PW).stdout.decode()
    assert str(data / "f.txt") in listing
    assert snap["airflow_backup"]["errors"][0]["path"] == str(missing)
    nothing = run_cli(ours, "backup", str(missing), password=PW)
    assert nothing.returncode == 1 and b"no such file or directory" in nothing.stderr
    assert len(json.loads(run_cli(ours, "--json", "snapshots", password=PW).stdout)) == 1
