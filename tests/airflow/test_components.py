"""Hook, error mapping, trigger, sensor and notifier against real Airflow and real storage."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_backup import errors
from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.provider.errors import airflow_error, engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.notifications.apprise import BackupNotifier
from airflow_backup.provider.operators.base import job_tag
from airflow_backup.provider.sensors.freshness import BackupFreshnessSensor
from airflow_backup.provider.triggers.freshness import BackupFreshnessTrigger
from airflow_backup.repository.repo import Repository
from conftest import KDF, PASSWORD, open_repo, set_connection
from support.moto_source import start_moto_server, stop_moto_server
from support.receiver import receiver


def _backup(repo_dir: Path, data: Path, job: str = "files") -> str:
    repo = open_repo(repo_dir)
    return Archiver(repo).backup(BackupOptions(paths=[str(data)], tags=[job_tag(job)])).snapshot.id


# --- hook -----------------------------------------------------------------------------------

def test_hook_maps_connection_fields_to_the_repository_url(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [({"host": "/srv/repo"}, "/srv/repo"),
             ({"host": "/srv", "schema": "repo"}, "/srv/repo"),
             ({"host": "ignored", "extra": {"url": "s3://bucket/prefix"}}, "s3://bucket/prefix")]
    for fields, url in cases:
        set_connection("br_map", conn_type="backup_repository", **fields)
        assert BackupRepositoryHook("br_map").repository_url() == url
    set_connection("br_map", conn_type="backup_repository")
    with pytest.raises(errors.ConfigError):
        BackupRepositoryHook("br_map").repository_url()
    monkeypatch.delenv("AIRFLOW_CONN_BR_MAP")


def test_hook_opens_the_repository_and_reports_a_wrong_password(
        repo_conn: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id, repo_dir = repo_conn
    hook = BackupRepositoryHook()
    assert hook.get_repository().config.id == open_repo(repo_dir).config.id
    assert hook.test_connection()[0]
    set_connection(conn_id, conn_type="backup_repository", host=str(repo_dir), password="nope")
    with pytest.raises(errors.WrongPassword):
        BackupRepositoryHook(conn_id).get_repository()
    ok, message = BackupRepositoryHook(conn_id).test_connection()
    assert not ok and "nope" not in message


@pytest.fixture
def moto() -> Iterator[str]:
    proc, endpoint = start_moto_server()
    yield endpoint
    stop_moto_server(proc)


def test_hook_builds_s3_storage_from_an_aws_connection(
        moto: str, data_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Endpoint, region and keys only exist in the aws connection: without it the URL would go
    # to real AWS (and fail here, offline).
    set_connection("aws_moto", conn_type="aws", login="testing", password="testing",
                   extra={"endpoint_url": moto, "region_name": "eu-west-1"})
    set_connection("br_s3", conn_type="backup_repository", password=PASSWORD,
                   extra={"url": "s3://af-bucket/repo", "aws_conn_id": "aws_moto"})
    hook = BackupRepositoryHook("br_s3")
    from airflow_backup.operations.connection_spec import _s3_from_aws_connection
    from airflow_backup.provider.connections import airflow_connection
    fs, root = _s3_from_aws_connection("s3://af-bucket/repo", airflow_connection("aws_moto"))
    assert root == "af-bucket/repo"
    fs.mkdir("af-bucket")
    Repository.init(hook.get_storage(), PASSWORD, kdf=KDF)
    repo = hook.get_repository()
    sid = Archiver(repo).backup(BackupOptions(paths=[str(data_tree)])).snapshot.id
    assert [s.id for s in BackupRepositoryHook("br_s3").get_repository().list_snapshots()] == [sid]
    assert any(p.endswith("/config") for p in fs.find("af-bucket/repo"))


def test_hook_caches_the_metadata_of_a_remote_repository(
        moto: str, data_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same cache as the CLI and `run` (AIRFLOW_BACKUP_CACHE_DIR, else ~/.cache): a task
    # that opens an S3 repository reads its index and snapshots from it the next time.
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIRFLOW_BACKUP_CACHE_DIR", str(cache))
    set_connection("aws_moto2", conn_type="aws", login="testing", password="testing",
                   extra={"endpoint_url": moto, "region_name": "eu-west-1"})
    set_connection("br_s3c", conn_type="backup_repository", password=PASSWORD,
                   extra={"url": "s3://af-cache/repo", "aws_conn_id": "aws_moto2"})
    hook = BackupRepositoryHook("br_s3c")
    from airflow_backup.operations.connection_spec import _s3_from_aws_connection
    from airflow_backup.provider.connections import airflow_connection
    _s3_from_aws_connection("s3://af-cache/repo",
                            airflow_connection("aws_moto2"))[0].mkdir("af-cache")
    Repository.init(hook.get_storage(), PASSWORD, kdf=KDF)
    repo = hook.get_repository()
    Archiver(repo).backup(BackupOptions(paths=[str(data_tree)]))
    BackupRepositoryHook("br_s3c").get_repository().list_snapshots()
    cached = {p.parent.name for p in (cache / repo.config.id).rglob("*") if p.is_file()}
    assert {"snapshots", "index"} <= cached, cached


# --- error mapping --------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [
    errors.ConfigError("bad"), errors.SnapshotNotFound("none"),
    errors.PermanentStorageError("denied"), errors.IntegrityError("mac"),
    errors.WrongPassword("pw"), errors.RepositoryNotFound("gone"),
    errors.SourceAuthFailed("auth"), errors.RestoreMismatch("diff"),
])
def test_permanent_engine_errors_become_airflow_fail_exception(exc: errors.BackupError) -> None:
    mapped = airflow_error(exc)
    assert isinstance(mapped, AirflowFailException)
    assert type(exc).__name__ in str(mapped)
    with pytest.raises(AirflowFailException) as info, engine_errors():
        raise exc
    assert info.value.__cause__ is exc


@pytest.mark.parametrize("exc", [
    errors.TransientStorageError("timeout"), errors.RepositoryLocked("locked"),
    errors.SourceUnavailable("down"), errors.DumpFailed("died"),
])
def test_retryable_engine_errors_are_raised_for_airflow_retries(
        exc: errors.BackupError) -> None:
    assert airflow_error(exc) is exc
    with pytest.raises(type(exc)), engine_errors():
        raise exc


# --- trigger and sensor ---------------------------------------------------------------------

def test_trigger_serialize_round_trip() -> None:
    trigger = BackupFreshnessTrigger(backup_repository_conn_id="c", max_age_seconds=90,
                                     job="files", tags=["a", "b"], host="h", poke_interval=5)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    rebuilt = cls(**kwargs)
    assert isinstance(rebuilt, BackupFreshnessTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    json.dumps(kwargs)  # travels through the metadata DB


def test_trigger_fires_once_a_fresh_snapshot_appears(
        repo_conn: tuple[str, Path], data_tree: Path) -> None:
    conn_id, repo_dir = repo_conn

    async def scenario() -> dict[str, object]:
        trigger = BackupFreshnessTrigger(backup_repository_conn_id=conn_id,
                                         max_age_seconds=600, job="files", poke_interval=0.1)
        waiting = asyncio.create_task(trigger.run().__anext__())
        await asyncio.sleep(0.5)
        assert not waiting.done()  # no snapshot yet: still polling
        await asyncio.to_thread(_backup, repo_dir, data_tree)
        event = await asyncio.wait_for(waiting, 15)
        return dict(event.payload)

    payload = asyncio.run(scenario())
    assert payload["status"] == "success"
    snap = payload["snapshot"]
    assert isinstance(snap, dict)
    assert snap["snapshot_id"] == open_repo(repo_dir).list_snapshots()[0].id


def test_trigger_reports_a_permanent_error(repo_conn: tuple[str, Path]) -> None:
    conn_id, repo_dir = repo_conn
    set_connection(conn_id, conn_type="backup_repository", host=str(repo_dir), password="x")

    async def first() -> dict[str, object]:
        trigger = BackupFreshnessTrigger(backup_repository_conn_id=conn_id,
                                         max_age_seconds=60, poke_interval=0.1)
        event = await asyncio.wait_for(trigger.run().__anext__(), 15)
        return dict(event.payload)

    payload = asyncio.run(first())
    assert payload["status"] == "error" and "WrongPassword" in str(payload["message"])


def test_deferrable_sensor_defers_until_fresh_then_completes(
        repo_conn: tuple[str, Path], data_tree: Path) -> None:
    _, repo_dir = repo_conn
    old = _backup(repo_dir, data_tree, job="other")
    sensor = BackupFreshnessSensor(task_id="fresh", job="files", deferrable=True,
                                   max_age=timedelta(minutes=5), poke_interval=3, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, BackupFreshnessTrigger)
    assert trigger.job == "files" and trigger.max_age_seconds == 300
    assert deferred.value.method_name == "execute_complete"
    new = _backup(repo_dir, data_tree, job="files")
    assert sensor.poke({}) is True  # type: ignore[arg-type]
    done = sensor.execute_complete({}, {"status": "success",  # type: ignore[arg-type]
                                        "snapshot": {"snapshot_id": new}})
    assert done["snapshot_id"] == new != old
    with pytest.raises(AirflowFailException):
        sensor.execute_complete({}, {"status": "error", "message": "m"})  # type: ignore[arg-type]


# --- notifier -------------------------------------------------------------------------------

def test_notifier_async_path_and_connection_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as rx:
        set_connection("apprise_test", conn_type="generic", extra={"urls": [rx.url]})
        notifier = BackupNotifier(apprise_conn_id="apprise_test", title="t", body="b")
        asyncio.run(notifier.async_notify({}))  # type: ignore[arg-type]
        messages = list(rx.messages)
    assert [(m["title"], m["message"]) for m in messages] == [("t", "b")]
    with pytest.raises(ValueError):
        BackupNotifier()
    with pytest.raises(ValueError):
        BackupNotifier(urls=["not a url"]).notify({})  # type: ignore[arg-type]


def test_notifier_default_text_works_as_a_deadline_alert_callback() -> None:
    # What the triggerer does with AsyncCallback(BackupNotifier, kwargs={"urls": [...]}):
    # build it with the kwargs and the deadline's simple context, then await it.
    context = {"dag_run": {"dag_id": "backup__db", "dag_run_id": "scheduled__1",
                           "state": "running"},
               "deadline": {"id": "d1", "deadline_time": "2026-11-26T03:00:00+00:00"}}
    with receiver() as rx:
        notifier = BackupNotifier(urls=[rx.url], context=context)

        async def fire() -> None:
            await notifier

        asyncio.run(fire())
        messages = list(rx.messages)
    assert [m["title"] for m in messages] == ["airflow-backup: backup__db missed its deadline"]
    assert messages[0]["message"] == ("backup__db (run scheduled__1, state running) had not "
                                      "finished by its deadline 2026-11-26T03:00:00+00:00.")


def test_notifier_raises_when_delivery_fails() -> None:
    with receiver() as rx:
        url = rx.url
    # The receiver is gone: nothing listens there any more.
    with pytest.raises(RuntimeError):
        BackupNotifier(urls=[url], title="t", body="b").notify({})  # type: ignore[arg-type]


def test_job_filter_uses_the_jobs_tag_and_skips_drill_records(
        repo_conn: tuple[str, Path], data_tree: Path) -> None:
    from airflow_backup.operations.tags import DRILL_TAG
    from airflow_backup.provider.operators.base import snapshot_filter
    from airflow_backup.repository.select import select_snapshots

    _, repo_dir = repo_conn
    repo = open_repo(repo_dir)
    real = Archiver(repo).backup(BackupOptions(paths=[str(data_tree)],
                                               tags=["job=files"])).snapshot.id
    Archiver(repo).backup(BackupOptions(paths=[str(data_tree)], tags=["job=files", DRILL_TAG]))
    picked = select_snapshots(repo, snapshot_filter(job="files", tags=[], host=None))
    assert [s.id for s in picked] == [real]


# --- the triggerer and the sensor's defaults --------------------------------------------------

def _fresh_python(code: str, **env: str) -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_trigger_module_loads_no_engine_code_into_the_triggerer_loop() -> None:
    # The triggerer imports a trigger's module in its event loop; the engine is imported by
    # the polling function, which runs in a thread.
    loaded = _fresh_python(
        "import sys, airflow_backup.provider.triggers.freshness\n"
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'airflow_backup.repository', 'airflow_backup.storage', "
        "'airflow_backup.provider.hooks', 'airflow_backup.operations'))))")
    assert loaded == "[]"


def test_the_sensor_is_deferrable_when_airflow_says_so_by_default() -> None:
    code = ("import datetime\n"
            "from airflow_backup.provider.sensors.freshness import BackupFreshnessSensor as S\n"
            "print(S(task_id='f', max_age=datetime.timedelta(hours=1)).deferrable)")
    assert _fresh_python(code, AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True") == "True"
    assert _fresh_python(code, AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="False") == "False"
