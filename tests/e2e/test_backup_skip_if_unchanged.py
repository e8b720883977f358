"""``backup --skip-if-unchanged`` as restic >= 0.17 documents it (040_backup.rst; restic
0.14 has no such flag): with nothing changed since the parent, no snapshot is saved and the
output says "skipped creating snapshot" (the JSON summary has no snapshot_id); a change
makes the next one save a snapshot again."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import ok, ok_stdout, repo, run_cli

__all__ = ["repo"]


def _snapshots(repo: Path) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(ok_stdout(run_cli(repo, "--json",
                                                                   "snapshots")))
    return listed


def test_nothing_changed_saves_no_snapshot(repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "work"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a\n")
    (data / "sub" / "b.txt").write_text("b\n")
    first = ok_stdout(run_cli(repo, "backup", data, "--skip-if-unchanged"))
    assert "snapshot " in first and " saved" in first  # no parent: always saved
    again = ok_stdout(run_cli(repo, "backup", data, "--skip-if-unchanged"))
    assert again.strip().endswith("skipped creating snapshot")
    assert "0 new, 0 changed" in again
    summary = json.loads(ok_stdout(run_cli(repo, "--json", "backup", data,
                                           "--skip-if-unchanged")).splitlines()[-1])
    assert summary["message_type"] == "summary" and "snapshot_id" not in summary
    assert len(_snapshots(repo)) == 1

    (data / "sub" / "b.txt").write_text("changed\n")
    changed = ok_stdout(run_cli(repo, "backup", data, "--skip-if-unchanged"))
    assert "skipped" not in changed and " saved" in changed
    assert len(_snapshots(repo)) == 2
    # Without the flag an unchanged backup still makes a snapshot, as restic.
    ok(run_cli(repo, "backup", data))
    assert len(_snapshots(repo)) == 3
