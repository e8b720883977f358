"""A drill record never answers the job's own filters: after ``drill``, ``restore latest --tag
job=NAME`` — the runbook's command — restores the job's data, with restic and with
airflow-backup, and ``snapshots`` shows the record apart (tag ``drill-of=NAME``)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from support.cli import run_cli
from support.tools import require_tool, run_restic

PW = "drill-record-pw"


def test_restore_latest_by_job_tag_after_a_drill_restores_the_data(tmp_path: Path) -> None:
    restic = require_tool("restic")
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("the job's data\n")
    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": {"main": {"url": str(repo), "password_env": "DR_PW"}},
        "jobs": {"j": {"repository": "main", "sources": [str(data)], "drill": {}}}}))
    assert run_cli(None, "run", str(config), env={"DR_PW": PW}).returncode == 0
    drill = run_cli(None, "drill", str(config), env={"DR_PW": PW})
    assert drill.returncode == 0, drill.stdout + drill.stderr
    snaps = json.loads(run_cli(repo, "--json", "snapshots", password=PW).stdout)
    assert sorted(tuple(s["tags"]) for s in snaps) == [
        ("airflow-backup-drill", "drill-of=j"), ("job=j",)]
    by_tag = json.loads(run_cli(repo, "--json", "snapshots", "--tag", "job=j",
                                password=PW).stdout)
    assert [s["tags"] for s in by_tag] == [["job=j"]]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    r = run_cli(repo, "restore", "latest", "--tag", "job=j", "--target", str(ours),
                password=PW)
    assert r.returncode == 0, r.stderr
    run_restic(repo, "restore", "latest", "--tag", "job=j", "--target", str(theirs),
               password=PW, restic_bin=restic)
    for target in (ours, theirs):
        assert (target / str(data).lstrip("/") / "f.txt").read_text() == "the job's data\n"
