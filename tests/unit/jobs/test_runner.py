"""The job runner in process: per-step retries with exponential backoff and jitter, decided by
the error tree; non-retryable errors stop at once; a retried step never repeats one that
succeeded; outcomes are JSON-able; retention keeps only what the policy says; messages carry
no secrets."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.errors import RepositoryLocked
from airflow_backup.jobs.load import parse_config
from airflow_backup.jobs.runner import JobContext, retention_step, run_job
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
        "sources": ["postgresql://postgres@127.0.0.1:1/unreachable"],  # connection refused
        "retry": {"attempts": 4, "initial_delay": 2, "multiplier": 3, "max_delay": 10,
                  "jitter": 0.5}})
    sleeps: list[float] = []
    result = run_job(parse_config(data), "j", sleep=sleeps.append)
    assert result.status == "failed" and result.attempts == 4
    assert result.failed_step == "export" and result.error
    assert result.error.error_type == "SourceUnavailable"
    assert len(sleeps) == 3
    for got, base in zip(sleeps, [2, 6, 10], strict=True):  # 2·3^n capped at 10, + jitter
        assert base <= got <= base + 0.5
    json.dumps(result.to_json())


def test_a_missing_source_path_fails_at_once(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = _setup(tmp_path, monkeypatch, {"sources": [str(tmp_path / "absent")],
                                             "retry": {"attempts": 5}})
    sleeps: list[float] = []
    result = run_job(parse_config(data), "j", sleep=sleeps.append)
    assert result.status == "failed" and result.attempts == 1 and sleeps == []
    assert result.error and result.error.error_type == "SourceMissing"
    assert "no such file or directory" in result.error.message


def test_non_retryable_error_stops_at_once(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = _setup(tmp_path, monkeypatch, {"sources": [str(tmp_path)],
                                             "retry": {"attempts": 5}})
    monkeypatch.setenv("UNIT_REPO_PW", "not-the-password")
    sleeps: list[float] = []
    result = run_job(parse_config(data), "j", sleep=sleeps.append)
    assert result.status == "failed" and result.attempts == 1 and sleeps == []
    assert result.failed_step == "store" and result.error
    assert result.error.error_type == "WrongPassword"
    assert result.exit_code() == 12


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
    steps = {r.step: r.result for r in result.steps}
    assert list(steps) == ["export", "validate", "store", "verify", "retention"]
    assert steps["verify"]["data_blobs"] >= 1 and steps["verify"]["packs_read"] >= 1
    assert len(steps["retention"]["removed"]) == 1 and steps["retention"]["kept"] == 2
    json.dumps(result.to_json())
    assert PW not in json.dumps(rx.messages)
    assert "succeeded" in rx.messages[-1]["message"]
    snaps = Repository.open(LocalStorage(str(repo)), PW).list_snapshots()
    assert len(snaps) == 2 and all("job=j" in s.tags for s in snaps)


def _locked_by_other(repo_dir: Path, exclusive: bool, release_after: float) -> Any:
    """Hold a lock as another process would, released by a timer; return the timer."""
    other = Repository.open(LocalStorage(str(repo_dir)), PW)
    cm = other.lock(exclusive=exclusive)
    cm.__enter__()
    timer = threading.Timer(release_after, cm.__exit__, (None, None, None))
    timer.start()
    return timer


def test_retention_locks_only_to_remove_and_waits_for_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    repo_dir, data = _setup(tmp_path, monkeypatch, {"sources": [str(src)]})
    backups = parse_config(data)  # no retention: each run adds a snapshot

    def with_retention(lock_wait: str) -> Any:
        data["jobs"]["j"]["retention"] = {"keep_last": 1}  # type: ignore[index]
        data["repositories"]["main"]["lock_wait"] = lock_wait  # type: ignore[index]
        return parse_config(data)

    assert run_job(backups, "j").ok
    # Nothing to remove: no exclusive lock needed, so another process's lock is no obstacle.
    timer = _locked_by_other(repo_dir, exclusive=False, release_after=1.0)
    assert retention_step(JobContext(with_retention("0")), "j", "main").removed == ()
    timer.join()
    assert run_job(backups, "j").ok  # two snapshots now; keep_last 1 removes one
    timer = _locked_by_other(repo_dir, exclusive=False, release_after=1.0)
    with pytest.raises(RepositoryLocked):  # lock_wait 0: no waiting
        retention_step(JobContext(with_retention("0")), "j", "main")
    timer.join()
    timer = _locked_by_other(repo_dir, exclusive=False, release_after=1.0)
    started = time.monotonic()
    result = retention_step(JobContext(with_retention("30s")), "j", "main")
    timer.join()
    assert len(result.removed) == 1 and time.monotonic() - started >= 0.9
