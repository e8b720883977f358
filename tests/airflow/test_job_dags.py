"""The DAG factory: DAGs generated from a jobs config, run with dag.test() on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.operations.tags import DRILL_TAG
from conftest import AIRFLOW_BIN, DAGS, KDF, PASSWORD, open_repo
from support.receiver import receiver

pytestmark = pytest.mark.slow

from airflow_backup.repository.repo import Repository  # noqa: E402
from airflow_backup.storage.local import LocalStorage  # noqa: E402

CONFIG = """
version: 1
repositories:
  main:
    url: {repo}
    password_env: AF_JOB_REPO_PASSWORD
    retry: {{attempts: 2, base_delay: 0, max_delay: 1, max_time: 10}}
    maintenance: {{schedule: {{cron: "0 4 * * 0"}}, check_subset: "100%", prune: true}}
jobs:
  files:
    sources: [{data}, {db}]
    repository: main
    schedule: {{cron: "0 2 * * *", timezone: Europe/Paris, window: 2h}}
    retention: {{keep_last: 1, prune: true}}
    retry: {{attempts: {attempts}, initial_delay: 1, multiplier: 2, max_delay: 30, jitter: 0}}
    verification: {{read_back: true, check_subset: "100%"}}
    notifications: {{urls: ["{rx}"], on: [failure, success, drill_failure, drill_success]}}
    drill: {{max_rto: 10m}}
"""


def _tis(dr: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in dr.get_task_instances()}


def _xcom(dr: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalars(select(XComModel.value).where(
            XComModel.dag_id == dr.dag_id, XComModel.run_id == dr.run_id,
            XComModel.task_id == task_id, XComModel.key == "return_value")).one()
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(autouse=True)
def _own_dag_files() -> Iterator[None]:
    """Each test's DAG file defines the same DAG ids: remove it afterwards."""
    yield
    for path in DAGS.glob("jobs_*.py"):
        path.unlink()


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rx_url: str, *,
           attempts: int = 2, name: str = "jobs") -> tuple[Path, Path, Path]:
    """A data tree, an SQLite database, a repository and a config; return (config, repo,
    data)."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(100_000))
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("create table t (id integer primary key, v text)")
    con.executemany("insert into t (v) values (?)", [(f"row {i}",) for i in range(500)])
    con.commit()
    con.close()
    repo = tmp_path / "repo"
    Repository.init(LocalStorage(str(repo)), PASSWORD, kdf=KDF)
    monkeypatch.setenv("AF_JOB_REPO_PASSWORD", PASSWORD)
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.format(repo=repo, data=data, db=db, rx=rx_url, attempts=attempts))
    return config, repo, data


def _dags(config: Path, name: str) -> dict[str, Any]:
    """Write the two-line DAG file into the DAGs folder and return its DAGs."""
    (DAGS / f"{name}.py").write_text(
        "from airflow_backup.provider.dags import backup_dags\n"
        f"globals().update(backup_dags({str(config)!r}))\n")
    from airflow_backup.provider.dags import backup_dags

    # dag.test() of Airflow 3.3.2 cannot run DAGs with deadline alerts (see provider/dags.py);
    # the deadline test below builds them.
    return backup_dags(config, deadline_alerts=False)


def test_generated_dags_back_up_drill_and_maintain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as rx:
        config, repo_dir, data = _setup(tmp_path, monkeypatch, rx.url)
        dags = _dags(config, "jobs_ok")
        assert sorted(dags) == ["backup__files", "drill__files", "maintenance__main",
                                "restore__files", "status__jobs"]
        backup = dags["backup__files"]
        assert [t.task_id for t in backup.tasks] == [
            "export", "validate", "store", "verify", "notify", "retention"]
        assert (backup.timetable.expression, str(backup.timetable.timezone)) == (
            "0 2 * * *", "Europe/Paris")
        runs = [backup.test(), backup.test()]
        for dr in runs:
            assert dr.state == "success", {k: v.state for k, v in _tis(dr).items()}
        stores = [_xcom(dr, "store") for dr in runs]
        drill_run = dags["drill__files"].test()
        maintenance_run = dags["maintenance__main"].test()
        messages = list(rx.messages)
    # Two backups (one snapshot each: the directory and the SQLite file are both paths);
    # retention keep_last=1 removed the first.
    repo = open_repo(repo_dir)
    backups = [s for s in repo.list_snapshots() if DRILL_TAG not in s.tags]
    ids = [s["id"] for s in stores[1]["snapshots"]]
    assert sorted(s.id for s in backups) == sorted(ids)
    assert all("job=files" in s.tags for s in backups)
    assert _xcom(runs[1], "retention")["removed"] == [s["id"] for s in stores[0]["snapshots"]]
    verify = _xcom(runs[0], "verify")
    assert verify["snapshots"] == 1 and verify["packs_read"] >= 1
    export = _xcom(runs[0], "export")
    assert export["paths"] == [str(data), str(tmp_path / "app.db")]
    assert _xcom(runs[0], "notify") == {"status": "success", "event": "success", "sent": 1}
    # The drill restored the latest backup and recorded itself in the repository.
    assert drill_run.state == "success"
    drill = _xcom(drill_run, "drill")
    assert drill["ok"] and drill["snapshots"] == ids and drill["rto"] > 0
    assert [s.id for s in repo.list_snapshots() if DRILL_TAG in s.tags] == [drill["record"]]
    assert maintenance_run.state == "success"
    check = _xcom(maintenance_run, "check")
    assert check["packs_read"] == check["packs"] > 0
    assert "bytes_freed" in _xcom(maintenance_run, "prune")
    titles = [m["title"] for m in messages]
    assert titles == ["airflow-backup: job files: SUCCESS"] * 2 + [
        "airflow-backup: job files: DRILL SUCCESS"]
    # Each message leads to its run and the task's log.
    for message, dr in zip(messages, [*runs, drill_run], strict=True):
        assert f"run: {dr.run_id}" in message["message"]
        assert f"/dags/{dr.dag_id}/runs/" in message["message"] and "log: http" in \
            message["message"]
    assert PASSWORD not in json.dumps(messages)


def test_asset_event_of_the_store_task_schedules_the_drill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with receiver() as rx:
        config, _, _ = _setup(tmp_path, monkeypatch, rx.url, name="jobs_asset")
        dags = _dags(config, "jobs_asset")
        dr = dags["backup__files"].test()
    assert dr.state == "success"
    # The event fires from the notify task, which runs only once verify succeeded.
    assert dags["backup__files"].get_task("store").outlets == []
    asset = dags["backup__files"].get_task("notify").outlets[0]
    assert asset.uri == "airflow-backup://jobs/files"
    condition = dags["drill__files"].timetable.asset_condition
    assert [a.uri for a in condition.objects] == [asset.uri]
    with create_session() as session:
        extras = session.scalars(select(AssetEvent.extra).join(
            AssetModel, AssetModel.id == AssetEvent.asset_id).where(
            AssetModel.uri == asset.uri, AssetEvent.source_run_id == dr.run_id)).all()
    store = _xcom(dr, "store")
    assert extras == [{"job": "files", "repository": "main", "status": "success",
                       "degraded": False,
                       "snapshot_ids": [s["id"] for s in store["snapshots"]],
                       "bytes_added": store["snapshots"][0]["stored"],
                       "bytes_processed": store["snapshots"][0]["bytes"]}]


def test_broken_source_retries_with_growing_delays_alerts_once_no_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with receiver() as rx:
        config, repo_dir, _ = _setup(tmp_path, monkeypatch, rx.url, attempts=4,
                                     name="jobs_broken")
        # The database as an sqlite:// source: gone, it is unavailable (retried), whereas a
        # missing path is a mistake that no retry fixes (SourceMissing, failed at once).
        db = tmp_path / "app.db"
        config.write_text(config.read_text().replace(f", {db}]", f", sqlite://{db}]"))
        os.unlink(db)  # the source is gone
        dags = _dags(config, "jobs_broken")
        backup = dags["backup__files"]
        assert (backup.default_args["retries"], backup.default_args["retry_delay"]) == (
            3, dt.timedelta(seconds=1))
        dr = backup.test()
        messages = list(rx.messages)
    tis = _tis(dr)
    assert dr.state == "failed"
    assert (tis["export"].state, tis["export"].try_number) == ("failed", 4)
    assert tis["store"].state == "upstream_failed"
    with create_session() as session:
        tries = [(h.start_date, h.end_date) for h in session.scalars(
            select(TaskInstanceHistory).where(TaskInstanceHistory.dag_id == "backup__files",
                                              TaskInstanceHistory.run_id == dr.run_id)
            .order_by(TaskInstanceHistory.try_number))]
    tries.append((tis["export"].start_date, tis["export"].end_date))
    gaps = [(nxt[0] - prev[1]).total_seconds() for prev, nxt in pairwise(tries)]
    # initial_delay 1 s, multiplier 2: Airflow waits ≥ 1, 2, 4 s (plus its jitter, < 2×).
    assert all(gap >= floor for gap, floor in zip(gaps, (1, 2, 4), strict=True)), gaps
    assert gaps[2] > gaps[0], gaps
    assert len(messages) == 1, messages
    assert messages[0]["title"] == "airflow-backup: job files: FAILURE"
    assert "failed step: export" in messages[0]["message"]
    assert "app.db: no such file" in messages[0]["message"]
    assert open_repo(repo_dir).list_snapshots() == []


def test_deadline_alert_is_wired_and_its_async_callback_sends_the_job_alert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_backup.provider.notifications.job import JobNotifier

    with receiver() as rx:
        config, _, _ = _setup(tmp_path, monkeypatch, rx.url, name="jobs_deadline")
        from airflow_backup.provider.dags import backup_dags

        backup = backup_dags(config)["backup__files"]
        assert backup_dags(config, deadline_alerts=False)["backup__files"].deadline is None
        (alert,) = backup.deadline if isinstance(backup.deadline, list) else [backup.deadline]
        assert alert.interval == dt.timedelta(hours=2)
        assert alert.callback.kwargs["reason"] == "deadline"
        # What the triggerer does with the callback: build it with the kwargs, await it.
        notifier = JobNotifier(**alert.callback.kwargs,
                               context={"dag_run": {"run_id": "scheduled__x",
                                                    "dag_id": "backup__files"}})
        asyncio.run(_await(notifier))
        messages = list(rx.messages)
    assert len(messages) == 1
    assert "has not finished within its window of 7200s" in messages[0]["message"]
    assert "run scheduled__x overran" in messages[0]["message"]
    assert "(run scheduled__x)" in messages[0]["message"]  # named in the summary line too
    assert "/dags/backup__files/runs/scheduled__x" in messages[0]["message"]  # and linked


async def _await(notifier: Any) -> None:
    await notifier


def test_airflow_dags_test_cli_runs_a_generated_dag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as rx:
        config, repo_dir, _ = _setup(tmp_path, monkeypatch, rx.url, name="jobs_cli")
        _dags(config, "jobs_cli")
        proc = subprocess.run([str(AIRFLOW_BIN), "dags", "test", "backup__files"],
                              capture_output=True, text=True, timeout=300, check=False,
                              env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr
    (snapshot,) = open_repo(repo_dir).list_snapshots()
    assert "job=files" in snapshot.tags
    assert [m["title"] for m in rx.messages] == ["airflow-backup: job files: SUCCESS"]


def test_invalid_config_is_an_import_error_naming_each_problem(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrepositories: {}\njobs: {}\n")
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "backups.py").write_text(
        "from airflow_backup.provider.dags import backup_dags\n"
        "globals().update(backup_dags('../bad.yaml'))\n")
    bag = DagBag(dag_folder=str(folder))
    (error,) = bag.import_errors.values()
    assert "InvalidConfigFile" in error and "bad.yaml: 2 problem(s)" in error
    assert "repositories: must not be empty" in error and "jobs: must not be empty" in error


def test_a_broken_job_loses_only_its_dags_and_the_status_dag_alerts_each_breach_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One invalid job (keep_daily: -1) beside a valid one: the valid job's DAGs are
    generated; the status DAG alerts the invalid job (config_error, to the valid job's URLs)
    and the valid job's RPO breach (no backup yet) once, then not again; a backup clears
    the breach and the watch run succeeds."""
    with receiver() as rx:
        config, _, _ = _setup(tmp_path, monkeypatch, rx.url, name="fleet")
        text = config.read_text().replace(
            "on: [failure, success, drill_failure, drill_success]",
            "on: [failure, rpo_breach, config_error]")
        text = text.replace("    drill: {max_rto: 10m}\n", "    drill: {max_rto: 10m}\n"
                            "    rpo: 1h\n")
        config.write_text(text + "  broken:\n    sources: [/tmp]\n    repository: main\n"
                          "    retention: {keep_daily: -1}\n")
        dags = _dags(config, "jobs_fleet")
        assert sorted(dags) == ["backup__files", "drill__files", "maintenance__main",
                                "restore__files", "status__fleet"]
        status = dags["status__fleet"]
        first, second = status.test(), status.test()
        assert first.state == second.state == "failed"  # breaches in force
        titles = sorted(m["title"] for m in rx.messages)
        assert titles == ["airflow-backup: job broken: CONFIG ERROR",
                          "airflow-backup: job files: RPO BREACH"], titles
        body = next(m["message"] for m in rx.messages if "CONFIG ERROR" in m["title"])
        assert "jobs.broken.retention.keep_daily: must be ≥ 0" in body
        assert dags["backup__files"].test().state == "success"
        third = status.test()
        assert third.state == "failed" and len(rx.messages) == 2  # the config error remains
        config.write_text(config.read_text().split("  broken:")[0])
        fourth = status.test()
        assert fourth.state == "success"
        watched = _xcom(fourth, "watch")
        assert watched["state"] == {} and watched["alerted"] == []
        assert [j["job"] for j in watched["jobs"]] == ["files"]
        assert not watched["jobs"][0]["rpo_breach"]
    assert len(rx.messages) == 2


def test_a_variable_only_the_workers_have_does_not_break_the_dags(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The DAG processor builds the DAGs without ``${AF_LAZY_DATA}`` (the config is read
    lazily there); a task reads the config again where it runs: without the variable it
    fails naming it, with it the backup succeeds."""
    with receiver() as rx:
        config, repo_dir, data = _setup(tmp_path, monkeypatch, rx.url, name="lazy")
        config.write_text(config.read_text().replace(f"sources: [{data}, ",
                                                     "sources: [\"${AF_LAZY_DATA}\", "))
        monkeypatch.delenv("AF_LAZY_DATA", raising=False)
        dags = _dags(config, "jobs_lazy")
        assert "backup__files" in dags
        failed = dags["backup__files"].test()
        out, err = capfd.readouterr()
        assert failed.state == "failed"
        assert not open_repo(repo_dir).list_snapshots()
        monkeypatch.setenv("AF_LAZY_DATA", str(data))
        assert dags["backup__files"].test().state == "success"
    (snapshot,) = open_repo(repo_dir).list_snapshots()
    assert str(data) in snapshot.paths
    # The failed run could not read the job's notifications (they are in the config it could
    # not load): its task failed with the one-line cause, not retried; the status watch is
    # what alerts a config a worker cannot load (config_error).
    assert "jobs.files.sources.0: environment variable AF_LAZY_DATA is not set" in out + err
    assert [m["title"] for m in rx.messages] == ["airflow-backup: job files: SUCCESS"]
