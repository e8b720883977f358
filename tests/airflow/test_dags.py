"""Real Airflow: dag.test() of DAGs built from the provider's operators on an SQLite DB."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.provider.operators.backup import backup_asset
from conftest import PASSWORD, load_dag, open_repo
from support.receiver import receiver

pytestmark = pytest.mark.slow

HEADER = """
import datetime
from airflow.sdk import DAG
from airflow_backup.provider.notifications.apprise import BackupNotifier
from airflow_backup.provider.operators.backup import BackupOperator
from airflow_backup.provider.operators.maintenance import ForgetPruneOperator, VerifyBackupOperator
from airflow_backup.provider.operators.restore import RestoreDrillOperator, RestoreOperator
from airflow_backup.provider.sensors.freshness import BackupFreshnessSensor
START = datetime.datetime(2026, 1, 1)
NO_WAIT = datetime.timedelta(seconds=0)
"""


def _tis(dr: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in dr.get_task_instances()}


def _xcom(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(select(XComModel).where(
            XComModel.dag_id == dr.dag_id, XComModel.run_id == dr.run_id,
            XComModel.task_id == task_id, XComModel.key == "return_value")).one()
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


def test_backup_verify_restore_drill_retention_freshness(
        repo_conn: tuple[str, Path], data_tree: Path, tmp_path: Path) -> None:
    _, repo_dir = repo_conn
    restore_dir = tmp_path / "restored"
    with receiver() as rx:
        dag = load_dag("af_full", HEADER + f"""
with DAG("af_full", schedule=None, start_date=START) as dag:
    b1 = BackupOperator(task_id="backup1", job="files", paths=[{str(data_tree)!r}],
                        tags=["nightly"])
    b2 = BackupOperator(task_id="backup2", job="files", paths=[{str(data_tree)!r}],
                        tags=["nightly"])
    notifier = BackupNotifier(urls=[{rx.url!r}], title="ok {{{{ ti.task_id }}}}")
    verify = VerifyBackupOperator(task_id="verify", read_data_subset="100%",
                                  on_success_callback=notifier)
    restore = RestoreOperator(task_id="restore", job="files", target={str(restore_dir)!r})
    drill = RestoreDrillOperator(task_id="drill", job="files")
    keep = ForgetPruneOperator(task_id="retention", job="files", keep_last=1)
    fresh = BackupFreshnessSensor(task_id="fresh", job="files", tags=["nightly"],
                                  max_age=datetime.timedelta(hours=1), poke_interval=1,
                                  timeout=30)
    b1 >> b2 >> verify >> restore >> drill >> keep >> fresh
""")
        dr = dag.test()
        messages = list(rx.messages)
    tis = _tis(dr)
    assert dr.state == "success", {k: v.state for k, v in tis.items()}
    # The engine sees what the tasks did: two backups, retention kept one.
    snaps = open_repo(repo_dir).list_snapshots()
    first, second = _xcom(dr, "backup1"), _xcom(dr, "backup2")
    assert [s.id for s in snaps] == [second["snapshot_id"]]
    assert set(snaps[0].tags) == {"nightly", "job=files"}
    assert first["bytes_added"] > 200_000 and second["bytes_added"] == 0
    assert first["files"] == 3 and first["duration_s"] >= 0
    assert PASSWORD not in json.dumps([first, second])
    # Restored tree equals the source.
    restored = restore_dir / str(data_tree).lstrip("/")
    assert (restored / "sub" / "b.bin").read_bytes() == (data_tree / "sub" / "b.bin").read_bytes()
    drill = _xcom(dr, "drill")
    assert drill["files"] == 3 and drill["snapshot_id"] == second["snapshot_id"]
    assert drill["rto_seconds"] > 0
    assert _xcom(dr, "retention")["removed"] == [first["snapshot_id"]]
    assert _xcom(dr, "fresh")["snapshot_id"] == second["snapshot_id"]
    # The success notifier fired exactly once, with the rendered title.
    assert len(messages) == 1 and messages[0]["title"] == "ok verify"
    # Each backup emitted an event on the job's Asset with the snapshot as metadata.
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        extras = session.scalars(select(AssetEvent.extra).join(
            AssetModel, AssetModel.id == AssetEvent.asset_id).where(
            AssetModel.uri == backup_asset("files").uri,
            # One Asset per job: generated DAGs of other tests emit on it too.
            AssetEvent.source_dag_id == dr.dag_id).order_by(AssetEvent.id)).all()
    assert [e["snapshot_id"] for e in extras] == [first["snapshot_id"], second["snapshot_id"]]
    assert extras[0]["bytes_added"] == first["bytes_added"] and extras[0]["time"]


def test_broken_source_fails_after_retries_notifies_once_no_snapshot(
        repo_conn: tuple[str, Path], tmp_path: Path) -> None:
    _, repo_dir = repo_conn
    with receiver() as rx:
        dag = load_dag("af_broken_source", HEADER + f"""
with DAG("af_broken_source", schedule=None, start_date=START) as dag:
    BackupOperator(task_id="backup", job="db",
                   source_url="sqlite:///{tmp_path}/missing.db",
                   retries=2, retry_delay=NO_WAIT,
                   on_failure_callback=BackupNotifier(urls=[{rx.url!r}]))
""")
        dr = dag.test()
        messages = list(rx.messages)
    ti = _tis(dr)["backup"]
    assert (dr.state, ti.state, ti.try_number) == ("failed", "failed", 3)  # retryable: 1 + 2
    assert len(messages) == 1
    assert "missing.db: no such file" in messages[0]["message"]
    assert messages[0]["title"] == "airflow-backup: af_broken_source.backup failed"
    assert open_repo(repo_dir).list_snapshots() == []


def test_permanent_error_fails_at_once_without_retry(
        repo_conn: tuple[str, Path], data_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id, repo_dir = repo_conn
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "backup_repository", "host": str(repo_dir), "password": "Wr0ng-s3cret"}))
    with receiver() as rx:
        dag = load_dag("af_wrong_password", HEADER + f"""
with DAG("af_wrong_password", schedule=None, start_date=START) as dag:
    BackupOperator(task_id="backup", job="files", paths=[{str(data_tree)!r}],
                   retries=3, retry_delay=NO_WAIT,
                   on_failure_callback=BackupNotifier(urls=[{rx.url!r}]))
""")
        dr = dag.test()
        messages = list(rx.messages)
    ti = _tis(dr)["backup"]
    assert (ti.state, ti.try_number) == ("failed", 1)  # AirflowFailException: no retry
    assert len(messages) == 1 and "WrongPassword" in messages[0]["message"]
    assert "Wr0ng-s3cret" not in json.dumps(messages)
    assert open_repo(repo_dir).list_snapshots() == []


def test_transient_storage_failure_is_retried(
        repo_conn: tuple[str, Path], data_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id, repo_dir = repo_conn
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "backup_repository", "host": str(repo_dir), "password": PASSWORD,
        "extra": {"retry": {"retry_attempts": "2", "retry_base_delay": "0"},
                  "faults": "failure_rate=1,operations=save"}}))
    dag = load_dag("af_transient", HEADER + f"""
with DAG("af_transient", schedule=None, start_date=START) as dag:
    BackupOperator(task_id="backup", job="files", paths=[{str(data_tree)!r}],
                   retries=1, retry_delay=NO_WAIT)
""")
    dr = dag.test()
    ti = _tis(dr)["backup"]
    assert (ti.state, ti.try_number) == ("failed", 2)  # TransientStorageError: retried once
    assert open_repo(repo_dir).list_snapshots() == []


def test_retry_delays_grow_exponentially_in_the_task_instance_history(
        repo_conn: tuple[str, Path], tmp_path: Path) -> None:
    _, repo_dir = repo_conn
    dag = load_dag("af_backoff", HEADER + f"""
with DAG("af_backoff", schedule=None, start_date=START) as dag:
    BackupOperator(task_id="backup", job="db", source_url="sqlite:///{tmp_path}/missing.db",
                   retries=3, retry_delay=datetime.timedelta(seconds=1),
                   retry_exponential_backoff=2.0,
                   max_retry_delay=datetime.timedelta(seconds=30))
""")
    dr = dag.test()
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tries = [(h.start_date, h.end_date) for h in session.scalars(
            select(TaskInstanceHistory).where(TaskInstanceHistory.dag_id == "af_backoff")
            .order_by(TaskInstanceHistory.try_number))]
    last = _tis(dr)["backup"]
    tries.append((last.start_date, last.end_date))
    assert last.state == "failed" and len(tries) == 4
    gaps = [(nxt[0] - prev[1]).total_seconds() for prev, nxt in pairwise(tries)]
    # Airflow waits at least retry_delay * 2**(try-1) (plus jitter) before each retry.
    assert all(gap >= floor for gap, floor in zip(gaps, (1, 2, 4), strict=True)), gaps
    assert gaps[2] > gaps[0], gaps
    assert open_repo(repo_dir).list_snapshots() == []
