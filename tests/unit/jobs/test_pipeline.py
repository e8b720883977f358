"""The job pipeline in process: retries with exponential backoff and jitter around the whole
attempt, non-retryable errors stop at once, step results are JSON-able, retention keeps only
what the policy says, and messages carry no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_backup.jobs.config import parse_config
from airflow_backup.jobs.pipeline import run_job
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.local import LocalStorage
from support.receiver import receiver

PW = "unit-pipeline-pw"


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job: dict[str, object]
           ) -> tuple[Path, dict[str, object]]:
    repo = tmp_path / "repo"
    Repository.init(LocalStorage(str(repo)), PW)
    monkeypatch.setenv("UNIT_REPO_PW", PW)
    data = {"repositories": {"main": {"url": str(repo), "password_env": "UNIT_REPO_PW"}},
            "jobs": {"j": {"repository": "main", **job}}}
    return repo, data


def test_retries_back_off_exponentially_with_jitter(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = _setup(tmp_path, monkeypatch, {
        "sources": [str(tmp_path / "absent")],
        "retry": {"attempts": 4, "initial_delay": 2, "multiplier": 3, "max_delay": 10,
                  "jitter": 0.5}})
    sleeps: list[float] = []
    result = run_job(parse_config(data), "j", sleep=sleeps.append)
    assert result.status == "failed" and result.attempts == 4
    assert result.failed_step == "export" and result.error_type == "SourceUnavailable"
    assert len(sleeps) == 3
    for got, base in zip(sleeps, [2, 6, 10], strict=True):  # 2·3^n capped at 10, + jitter
        assert base <= got <= base + 0.5
    json.dumps(result.to_json())


def test_non_retryable_error_stops_at_once(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = _setup(tmp_path, monkeypatch, {"sources": [str(tmp_path)],
                                             "retry": {"attempts": 5}})
    monkeypatch.setenv("UNIT_REPO_PW", "not-the-password")
    sleeps: list[float] = []
    result = run_job(parse_config(data), "j", sleep=sleeps.append)
    assert result.status == "failed" and result.attempts == 1 and sleeps == []
    assert result.failed_step == "store" and result.error_type == "WrongPassword"
    assert result.exit_code == 12


def test_success_results_retention_and_message(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("v0")
    with receiver() as rx:
        repo, data = _setup(tmp_path, monkeypatch, {
            "sources": [str(src)], "retention": {"keep_last": 2},
            "verification": {"check_subset": "100%"},
            "notifications": {"urls": [rx.url], "on": ["success"]}})
        cfg = parse_config(data)
        for i in range(3):
            (src / "f.txt").write_text(f"v{i}")
            result = run_job(cfg, "j")
            assert result.status == "success", result.error
        assert len(rx.messages) == 3
    steps = result.to_json()["steps"]
    assert list(steps) == ["export", "validate", "store", "verify", "retention"]
    assert steps["verify"]["data_blobs"] >= 1 and steps["verify"]["packs_read"] >= 1
    assert len(steps["retention"]["removed"]) == 1 and steps["retention"]["kept"] == 2
    json.dumps(steps)
    assert PW not in json.dumps(rx.messages)
    assert "succeeded" in rx.messages[-1]["message"]
    snaps = Repository.open(LocalStorage(str(repo)), PW).list_snapshots()
    assert len(snaps) == 2 and all("job=j" in s.tags for s in snaps)
