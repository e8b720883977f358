"""Generated DAGs report what the operations report: a degraded backup (primary gone, fallback
took it) fails the notify task under ``on_incomplete: fail`` and warns under ``warn``; the
notify task writes the metrics file; the drill that follows drills the fallback, where the
backup is; a transient storage error in ``store`` uses the job's retries; a RestoreOperator
``on_existing`` typo is refused when the DAG is parsed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import DAGS, KDF, PASSWORD, open_repo
from support.receiver import receiver

pytestmark = pytest.mark.slow

from airflow_backup.errors import ConfigError  # noqa: E402
from airflow_backup.operations.tags import DRILL_TAG  # noqa: E402
from airflow_backup.repository.repo import Repository  # noqa: E402
from airflow_backup.storage.local import LocalStorage  # noqa: E402


@pytest.fixture(autouse=True)
def _own_dag_files() -> Iterator[None]:
    yield
    for path in DAGS.glob("outcomes_*.py"):
        path.unlink()


def _xcom(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalars(select(XComModel.value).where(
            XComModel.dag_id == dr.dag_id, XComModel.run_id == dr.run_id,
            XComModel.task_id == task_id, XComModel.key == "return_value")).one()
    return json.loads(value) if isinstance(value, str) else value


def _tis(dr: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in dr.get_task_instances()}


def _dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, rx_url: str,
          job: dict[str, object], *, primary_exists: bool = True) -> tuple[dict[str, Any], Path]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    primary, fallback = tmp_path / "primary", tmp_path / "fallback"
    if primary_exists:
        Repository.init(LocalStorage(str(primary)), PASSWORD, kdf=KDF)
    Repository.init(LocalStorage(str(fallback)), PASSWORD, kdf=KDF)
    monkeypatch.setenv("OUTCOMES_PW", PASSWORD)
    retry = {"attempts": 2, "base_delay": 0, "max_delay": 0, "max_time": 5}
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": {
            "primary": {"url": str(primary), "password_env": "OUTCOMES_PW", "retry": retry,
                        "fallbacks": ["fallback"]},
            "fallback": {"url": str(fallback), "password_env": "OUTCOMES_PW", "retry": retry}},
        "metrics_file": str(tmp_path / "metrics.prom"),
        "jobs": {"files": {"sources": [str(data)], "repository": "primary",
                           "retry": {"attempts": 2, "initial_delay": 0, "jitter": 0},
                           "notifications": {"urls": [rx_url]}, **job}}}))
    (DAGS / f"{name}.py").write_text(
        "from airflow_backup.provider.dags import backup_dags\n"
        f"globals().update(backup_dags({str(config)!r}))\n")
    from airflow_backup.provider.dags import backup_dags

    return backup_dags(config, deadline_alerts=False), fallback


def test_degraded_backup_fails_notify_writes_metrics_and_the_drill_follows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as rx:
        dags, fallback = _dags(tmp_path, monkeypatch, "outcomes_degraded", rx.url, {},
                               primary_exists=False)
        dr = dags["backup__files"].test()
        drill = dags["drill__files"].test()
        titles = [m["title"] for m in rx.messages]
    tis = _tis(dr)
    assert dr.state == "failed"
    assert (tis["store"].state, tis["verify"].state) == ("success", "success")
    assert tis["notify"].state == "failed" and tis["retention"].state == "upstream_failed"
    store = _xcom(dr, "store")
    assert store["status"] == "degraded" and store["repository"] == "fallback"
    snaps = open_repo(fallback).list_snapshots()
    (snap,) = [s for s in snaps if DRILL_TAG not in s.tags]
    assert snap.id == store["snapshots"][0]["id"] and "degraded" in snap.tags
    metrics = (tmp_path / "metrics.prom").read_text()
    assert 'airflow_backup_last_success_timestamp_seconds{job="files"' in metrics
    assert "airflow-backup: job files: DEGRADED" in titles
    # The drill restores from the fallback, where the backup landed (the primary is gone).
    assert drill.state == "success"
    result = _xcom(drill, "drill")
    assert result["ok"] and result["repository"] == "fallback"
    assert result["snapshots"] == [snap.id]
    # … and records itself there.
    assert [s.id for s in open_repo(fallback).list_snapshots()
            if DRILL_TAG in s.tags] == [result["record"]]


def test_on_incomplete_warn_succeeds_with_the_status_in_xcom(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as rx:
        dags, _ = _dags(tmp_path, monkeypatch, "outcomes_warn", rx.url,
                        {"on_incomplete": "warn"}, primary_exists=False)
        dr = dags["backup__files"].test()
    assert dr.state == "success", {k: v.state for k, v in _tis(dr).items()}
    assert _xcom(dr, "notify")["status"] == "degraded"


def test_a_transient_storage_error_in_store_uses_the_jobs_retries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_BACKUP_FAULTS", "failure_rate=1,operations=save")
    with receiver() as rx:
        dags, fallback = _dags(tmp_path, monkeypatch, "outcomes_transient", rx.url,
                               {"repository": "fallback"})
        dr = dags["backup__files"].test()
    store = _tis(dr)["store"]
    # Retryable: 1 try + 1 retry (attempts: 2), not "failed after one try, not retryable".
    assert (store.state, store.try_number) == ("failed", 2)
    assert open_repo(fallback).list_snapshots() == []


def test_restore_operator_refuses_an_unknown_on_existing() -> None:
    from airflow_backup.provider.operators.restore import RestoreOperator

    with pytest.raises(ConfigError, match=r"invalid on_existing 'skipp': use one of fail, "
                                          r"skip, overwrite, replace"):
        RestoreOperator(task_id="restore", target="airflow-metadata://", on_existing="skipp")


def test_a_partial_backup_fails_the_dag_run_after_saving_its_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run by ``airflow dags test`` without the capabilities that let root read a 0000 file
    (as ``backup`` and ``run`` are in tests/e2e/test_run_matches_backup.py)."""
    import os
    import subprocess

    from conftest import AIRFLOW_BIN

    with receiver() as rx:
        _, repo = _dags(tmp_path, monkeypatch, "outcomes_partial", rx.url,
                        {"repository": "fallback"})
        secret = tmp_path / "data" / "secret.txt"
        secret.write_text("nobody may read this\n")
        secret.chmod(0)
        cmd = [str(AIRFLOW_BIN), "dags", "test", "backup__files"]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                              env=os.environ.copy())
        titles = [m["title"] for m in rx.messages]
    assert proc.returncode != 0, proc.stdout[-2000:]
    (snap,) = open_repo(repo).list_snapshots()
    meta = snap.extra["airflow_backup"]
    assert isinstance(meta, dict) and meta["partial"] is True
    assert "airflow-backup: job files: PARTIAL" in titles


def test_operators_and_generated_dags_share_the_jobs_asset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_backup.provider.operators.backup import BackupOperator

    with receiver() as rx:
        dags, _ = _dags(tmp_path, monkeypatch, "outcomes_asset", rx.url, {})
    generated = dags["backup__files"].get_task("notify").outlets
    operator = BackupOperator(task_id="b", job="files", paths=["/x"],
                              backup_repository_conn_id="some_connection").outlets
    assert [a.uri for a in generated] == [a.uri for a in operator] == [
        "airflow-backup://jobs/files"]
    assert dags["drill__files"].timetable.asset_condition.objects[0].uri == generated[0].uri


def test_the_copy_task_puts_the_jobs_snapshots_offsite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as rx:
        dags, offsite = _dags(tmp_path, monkeypatch, "outcomes_copy", rx.url,
                              {"copy_to": ["fallback"]})
        first = dags["backup__files"].test()
        second = dags["backup__files"].test()
    for dr in (first, second):
        assert dr.state == "success", {k: v.state for k, v in _tis(dr).items()}
        assert _tis(dr)["copy"].state == "success"
    one, two = _xcom(first, "copy")["targets"], _xcom(second, "copy")["targets"]
    assert [t["repository"] for t in one] == ["fallback"] and len(one[0]["copied"]) == 1
    assert len(two[0]["copied"]) == 1 and two[0]["skipped"] == 1
    primary_ids = [_xcom(dr, "store")["snapshots"][0]["id"] for dr in (first, second)]
    copies = open_repo(offsite).list_snapshots()
    assert sorted(s.original.hex() for s in copies if s.original) == sorted(primary_ids)
    assert all("job=files" in s.tags for s in copies)
