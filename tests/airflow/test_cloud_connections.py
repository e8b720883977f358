"""gs:// and az:// repositories from Airflow connections: a ``backup_repository`` connection
names a ``google_cloud_platform`` (``extra.gcp_conn_id``) or ``wasb`` (``extra.wasb_conn_id``)
connection, all defined the way Airflow reads them from the environment (AIRFLOW_CONN_<ID>,
as JSON and as a URI), and the hook opens the repository on a local emulator
(gcp-storage-emulator, Azurite) without the Google or Azure providers installed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from airflow_backup.operations.backup import BackupRequest, backup
from airflow_backup.operations.outcome import Status
from airflow_backup.operations.spec import init_repository
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from support.azurite import AzuriteServer
from support.gcs_emulator import GcsEmulator

PASSWORD = "cloud-airflow-password"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with GcsEmulator(tmp_path_factory.mktemp("gcs-emulator")) as server:
        yield server


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with AzuriteServer(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dag.py").write_text("print('hello')\n")
    return tmp_path / "data"


def _backup_and_list(conn_id: str, data: Path) -> None:
    hook = BackupRepositoryHook(conn_id)
    created, _ = init_repository(hook.get_spec())
    assert created
    outcome = backup(hook.get_spec(), BackupRequest(paths=(str(data),)))
    assert outcome.status is Status.SUCCESS, outcome.error
    # A new hook, as the next task would make: it finds the snapshot.
    fresh = BackupRepositoryHook(conn_id)
    assert [s.id for s in fresh.get_repository().list_snapshots()] == list(
        outcome.snapshot_ids)
    ok, message = fresh.test_connection()
    assert ok, message


def test_gs_repository_from_a_google_cloud_platform_connection(
        gcs: GcsEmulator, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = gcs.create_bucket()
    # The URI form, as `airflow connections add --conn-uri` or a secrets backend holds it.
    monkeypatch.setenv("AIRFLOW_CONN_GCP_EMULATOR", "google-cloud-platform://?" + urlencode(
        {"endpoint_url": gcs.endpoint, "project": "test"}))
    monkeypatch.setenv("AIRFLOW_CONN_BR_GS", json.dumps({
        "conn_type": "backup_repository", "password": PASSWORD,
        "extra": {"url": f"gs://{bucket}/airflow", "gcp_conn_id": "gcp_emulator"}}))
    _backup_and_list("br_gs", data)
    assert "airflow/config" in gcs.list_objects(bucket, "airflow/")


def test_az_repository_from_a_wasb_connection(
        azurite: AzuriteServer, data: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    container = azurite.create_container()
    monkeypatch.setenv("AIRFLOW_CONN_WASB_EMULATOR", json.dumps({
        "conn_type": "wasb", "login": azurite.account, "password": azurite.key,
        "host": azurite.account_url}))
    monkeypatch.setenv("AIRFLOW_CONN_BR_AZ", json.dumps({
        "conn_type": "backup_repository", "password": PASSWORD,
        "extra": {"url": f"az://{container}/airflow", "wasb_conn_id": "wasb_emulator"}}))
    _backup_and_list("br_az", data)
    assert "airflow/config" in azurite.list_blobs(container, "airflow/")
    assert azurite.key not in caplog.text


def test_az_repository_from_a_wasb_connection_string_uri(
        azurite: AzuriteServer, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    container = azurite.create_container()
    monkeypatch.setenv("AIRFLOW_CONN_WASB_CS", "wasb://?connection_string=" + quote(
        azurite.connection_string, safe=""))
    monkeypatch.setenv("AIRFLOW_CONN_BR_AZ_CS", json.dumps({
        "conn_type": "backup_repository", "password": PASSWORD,
        "extra": {"url": f"az://{container}/cs", "wasb_conn_id": "wasb_cs"}}))
    _backup_and_list("br_az_cs", data)


def test_a_mismatch_fails_the_connection_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BR_MISMATCH", json.dumps({
        "conn_type": "backup_repository", "password": PASSWORD,
        "extra": {"url": "s3://bucket/p", "wasb_conn_id": "nowhere"}}))
    ok, message = BackupRepositoryHook("br_mismatch").test_connection()
    assert not ok
    assert message == ("ConfigError: connection 'br_mismatch': wasb_conn_id works with az:// "
                       "repositories only, not s3://")
