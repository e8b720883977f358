"""gs:// and az:// repositories whose storage comes from the standard Airflow connections
(``extra.gcp_conn_id``: a ``google_cloud_platform`` connection; ``extra.wasb_conn_id``: a
``wasb`` connection), read field by field without the Google or Azure providers.

Against real emulators on 127.0.0.1, never a cloud: Google Cloud Storage through the PyPI
package gcp-storage-emulator, Azure Blob through Azurite (npm, ``make tools``). A missing
emulator skips locally and fails under CI=true. The connections are plain ConnectionFields
with a dictionary lookup: the Airflow-level test is tests/airflow/test_cloud_connections.py.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.connections import ConnectionFields
from airflow_backup.errors import ConfigError, NotFound, StorageError
from airflow_backup.operations.backup import BackupRequest, backup
from airflow_backup.operations.connection_spec import connection_storage, spec_from_connection
from airflow_backup.operations.outcome import Status
from airflow_backup.operations.restore import RestoreRequest, restore
from airflow_backup.operations.spec import init_repository, open_repository
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.storage import FileInfo, FileType, Handle
from support.azurite import AzuriteServer
from support.gcs_emulator import GcsEmulator

PASSWORD = "cloud-conn-repo-password"
KDF = KdfParams(1024, 8, 1)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with GcsEmulator(tmp_path_factory.mktemp("gcs-emulator")) as server:
        yield server


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with AzuriteServer(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@dataclass
class CloudRepo:
    """A backup_repository connection, the storage connection it names, and a way to list
    what the emulator holds (independently of the code under test)."""

    conn: ConnectionFields
    storage_conn: ConnectionFields
    list_objects: Callable[[], list[str]]
    secret: str = ""

    def lookup(self, conn_id: str) -> ConnectionFields:
        if conn_id != self.storage_conn.conn_id:
            raise ConfigError(f"connection {conn_id!r} is not defined")
        return self.storage_conn


def _gs_repo(gcs: GcsEmulator, variant: str, monkeypatch: pytest.MonkeyPatch) -> CloudRepo:
    bucket = gcs.create_bucket()
    extra: dict[str, object] = {"project": "test"}
    if variant == "endpoint_url":
        extra["endpoint_url"] = gcs.endpoint
    elif variant == "prefixed":  # the Google provider's older extra names
        extra = {"extra__google_cloud_platform__project": "test",
                 "extra__google_cloud_platform__endpoint_url": gcs.endpoint}
    else:  # the emulator convention of Google's client libraries
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint.removeprefix("http://"))
    gcp = ConnectionFields("gcp_emulator", "google_cloud_platform", extra=extra)
    conn = ConnectionFields("repo_gs", "backup_repository", password=PASSWORD,
                            extra={"url": f"gs://{bucket}/backups/main",
                                   "gcp_conn_id": "gcp_emulator"})
    return CloudRepo(conn, gcp, lambda: gcs.list_objects(bucket, "backups/main/"))


def _az_repo(azurite: AzuriteServer, variant: str) -> CloudRepo:
    container = azurite.create_container()
    if variant == "connection_string":
        wasb = ConnectionFields("wasb_emulator", "wasb",
                                extra={"connection_string": azurite.connection_string})
    elif variant == "shared_access_key":  # the wasb hook's extra, with the older prefix
        wasb = ConnectionFields("wasb_emulator", "wasb", host=azurite.account_url,
                                login=azurite.account,
                                extra={"extra__wasb__shared_access_key": azurite.key})
    else:  # login = account name, password = account key, host = account URL
        wasb = ConnectionFields("wasb_emulator", "wasb", host=azurite.account_url,
                                login=azurite.account, password=azurite.key)
    conn = ConnectionFields("repo_az", "backup_repository", password=PASSWORD,
                            extra={"url": f"az://{container}/backups/main",
                                   "wasb_conn_id": "wasb_emulator"})
    return CloudRepo(conn, wasb, lambda: azurite.list_blobs(container, "backups/main/"),
                     secret=azurite.key)


@pytest.fixture(params=["gs-endpoint_url", "gs-prefixed", "gs-STORAGE_EMULATOR_HOST",
                        "az-account_key", "az-connection_string", "az-shared_access_key"])
def cloud_repo(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> CloudRepo:
    kind, variant = request.param.split("-", 1)
    if kind == "gs":
        return _gs_repo(request.getfixturevalue("gcs"), variant, monkeypatch)
    return _az_repo(request.getfixturevalue("azurite"), variant)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "empty").write_bytes(b"")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_init_backup_restore_through_the_connection(
        cloud_repo: CloudRepo, src: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spec = spec_from_connection(cloud_repo.conn, lookup=cloud_repo.lookup)
    created, repo_id = init_repository(spec)
    assert created and repo_id
    # The repository is where the URL says, in restic's layout, on the emulator itself.
    objects = cloud_repo.list_objects()
    assert "backups/main/config" in objects
    assert any(o.startswith("backups/main/keys/") for o in objects)

    first = backup(spec, BackupRequest(paths=(str(src),)))
    assert first.status is Status.SUCCESS, first.error
    (src / "a.txt").write_text("alpha, changed\n")
    second = backup(spec, BackupRequest(paths=(str(src),)))
    assert second.status is Status.SUCCESS, second.error
    assert any(o.startswith("backups/main/data/") for o in cloud_repo.list_objects())

    # A fresh spec from the same connection opens it (metadata cached or not) and restores.
    repo = open_repository(spec_from_connection(cloud_repo.conn, lookup=cloud_repo.lookup))
    assert {s.id for s in repo.list_snapshots()} == {*first.snapshot_ids,
                                                    *second.snapshot_ids}
    target = tmp_path / "restored"
    outcome = restore(repo, RestoreRequest(target=str(target)))
    assert outcome.status is Status.SUCCESS, outcome.error
    restored = target / str(src).lstrip("/")
    assert _tree(restored) == _tree(src)
    if cloud_repo.secret:
        assert cloud_repo.secret not in caplog.text


def test_storage_contract_through_the_connection(cloud_repo: CloudRepo) -> None:
    storage = connection_storage(cloud_repo.conn, cloud_repo.lookup)
    storage.create_layout()
    h = Handle(FileType.DATA, "ab" + "0" * 62)
    storage.save(h, b"0123456789")
    assert storage.load(h) == b"0123456789"
    assert storage.load(h, 3, 4) == b"3456"
    assert storage.load(h, 8, 10) == b"89"
    assert storage.load(h, 10) == b""
    assert storage.load(h, 20, 5) == b""
    assert storage.stat(h) == FileInfo(h.name, 10)
    assert [f.name for f in storage.list(FileType.DATA)] == [h.name]
    with pytest.raises(StorageError):  # no overwrite of anything but a lock
        storage.save(h, b"other")
    storage.remove(h)
    assert not storage.exists(h)
    with pytest.raises(NotFound):
        storage.load(h)
    assert list(storage.list(FileType.DATA)) == []
    # Byte for byte, whatever the last bytes: a sealed file (config, index, snapshot) ends in
    # CR one time in 256, and an emulator that dropped that CR made the whole test flaky.
    for i, body in enumerate((b"ends in CR\r", b"\r", b"CR LF\r\n", b"LF\n", b"\r\n--\r")):
        odd = Handle(FileType.INDEX, f"{i:02x}" + "c" * 62)
        storage.save(odd, body)
        assert storage.load(odd) == body
        assert storage.stat(odd).size == len(body)
        storage.remove(odd)


def test_a_missing_bucket_or_container_is_a_storage_error(cloud_repo: CloudRepo) -> None:
    url = str(cloud_repo.conn.extra["url"])
    scheme, _, rest = url.partition("://")
    conn = replace(cloud_repo.conn,
                   extra={**cloud_repo.conn.extra, "url": f"{scheme}://no-such-{rest}",
                          "retry": {"retry_attempts": "1"}})
    spec = spec_from_connection(conn, lookup=cloud_repo.lookup)
    with pytest.raises(StorageError) as info:
        init_repository(spec)
    assert "\n" not in str(info.value)
    if cloud_repo.secret:
        assert cloud_repo.secret not in str(info.value)


def test_a_wrong_account_key_fails_without_showing_it(azurite: AzuriteServer) -> None:
    container = azurite.create_container()
    wrong = base64.b64encode(b"w" * 64).decode()
    wasb = ConnectionFields("wasb_wrong", "wasb", host=azurite.account_url,
                            login=azurite.account, password=wrong)
    conn = ConnectionFields("repo", "backup_repository", password=PASSWORD,
                            extra={"url": f"az://{container}/r", "wasb_conn_id": "wasb_wrong",
                                   "retry": {"retry_attempts": "1"}})
    spec = spec_from_connection(conn, lookup=lambda _: wasb)
    with pytest.raises(StorageError) as info:
        Repository.init(spec.open_storage(), PASSWORD, kdf=KDF)
    for text in (str(info.value), repr(info.value), repr(spec), repr(wasb)):
        assert wrong not in text and azurite.key not in text


# --- configuration errors: no emulator needed ----------------------------------------------

def _repo(url: str, **extra: object) -> ConnectionFields:
    return ConnectionFields("repo", "backup_repository", password=PASSWORD,
                            extra={"url": url, **extra})


def _lookup(**conns: ConnectionFields) -> Callable[[str], ConnectionFields]:
    return lambda conn_id: conns[conn_id]


@pytest.mark.parametrize(("url", "extra", "message"), [
    ("s3://bucket/p", {"gcp_conn_id": "g"},
     "connection 'repo': gcp_conn_id works with gs:// repositories only, not s3://"),
    ("/var/backups/repo", {"gcp_conn_id": "g"},
     "connection 'repo': gcp_conn_id works with gs:// repositories only, not a local path"),
    ("gs://bucket/p", {"wasb_conn_id": "w"},
     "connection 'repo': wasb_conn_id works with az:// repositories only, not gs://"),
    ("az://container/p", {"aws_conn_id": "a"},
     "connection 'repo': aws_conn_id works with s3:// repositories only, not az://"),
    ("gs://bucket/p", {"gcp_conn_id": "g", "wasb_conn_id": "w"},
     "connection 'repo': set only one of gcp_conn_id, wasb_conn_id"),
])
def test_mismatched_storage_connections_are_one_line_config_errors(
        url: str, extra: dict[str, object], message: str) -> None:
    def lookup(conn_id: str) -> ConnectionFields:
        raise AssertionError("the mismatch is found before any lookup")

    with pytest.raises(ConfigError) as info:
        spec_from_connection(_repo(url, **extra), lookup=lookup)
    assert str(info.value) == message
    with pytest.raises(ConfigError):
        connection_storage(_repo(url, **extra), lookup)


@pytest.mark.parametrize(("key", "url", "conn_type"), [
    ("gcp_conn_id", "gs://b/p", "aws"), ("wasb_conn_id", "az://c/p", "google_cloud_platform")])
def test_a_storage_connection_of_another_type_is_refused(key: str, url: str,
                                                         conn_type: str) -> None:
    other = ConnectionFields("other", conn_type, login="a", password="a2V5")
    with pytest.raises(ConfigError) as info:
        connection_storage(_repo(url, **{key: "other"}), _lookup(other=other))
    assert str(info.value).startswith(f"{key}: connection 'other' is of type {conn_type!r}")


def test_gcs_connection_errors(tmp_path: Path) -> None:
    secret = "-----BEGIN PRIVATE KEY-----\\nsecret-key-material\\n-----END PRIVATE KEY-----"
    cases: list[tuple[dict[str, object], str]] = [
        ({"key_path": str(tmp_path / "nope.json")}, "is not a file"),
        ({"keyfile_dict": "{" + secret}, "extra 'keyfile_dict' is not JSON"),
        ({"keyfile_dict": json.dumps({"type": "service_account", "private_key": secret})},
         "cannot build the GCS client"),
        ({"key_path": "/k.json", "keyfile_dict": "{}"}, "key_path or keyfile_dict, not both"),
        ({"key_secret_name": "projects/p/secrets/s"}, "'key_secret_name' is not supported"),
    ]
    for extra, expected in cases:
        gcp = ConnectionFields("gcp", "google_cloud_platform", extra=extra)
        with pytest.raises(ConfigError) as info:
            connection_storage(_repo("gs://b/p", gcp_conn_id="gcp"), _lookup(gcp=gcp))
        text = str(info.value)
        assert expected in text and "\n" not in text
        assert "secret-key-material" not in text and "secret-key-material" not in repr(gcp)
    with pytest.raises(ConfigError, match="takes no query options"):
        connection_storage(_repo("gs://b/p?project=x", gcp_conn_id="gcp"),
                           _lookup(gcp=ConnectionFields("gcp")))


def test_gcs_service_account_key_is_used_and_never_shown(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    key = {"type": "service_account", "project_id": "p", "private_key_id": "kid",
           "private_key": pem, "client_email": "backup@p.iam.gserviceaccount.com",
           "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    body = pem.splitlines()[1]
    for extra in ({"key_path": str(path)}, {"keyfile_dict": json.dumps(key)},
                  {"extra__google_cloud_platform__keyfile_dict": key}):
        gcp = ConnectionFields("gcp", "google_cloud_platform", extra={**extra, "project": "p"})
        storage = connection_storage(_repo("gs://bucket/p", gcp_conn_id="gcp"),
                                     _lookup(gcp=gcp))
        creds: Any = _gcs_credentials(storage)
        assert creds.service_account_email == "backup@p.iam.gserviceaccount.com"
        assert storage.location == "gs://bucket/p"
        for text in (repr(storage), str(storage), repr(gcp)):
            assert body not in text


def _gcs_credentials(storage: object) -> object:
    """The google-auth credentials of the gcsfs filesystem under the storage wrappers."""
    seen = storage
    for _ in range(10):
        fs = getattr(seen, "fs", None)
        if fs is not None and hasattr(fs, "credentials"):
            return fs.credentials.credentials
        seen = getattr(seen, "inner", None) or getattr(seen, "_inner", None) or getattr(
            seen, "_store", None) or getattr(seen, "backend", None)
    raise AssertionError("no gcsfs filesystem under the storage")


def test_azure_connection_forms_map_to_the_client() -> None:
    import adlfs  # noqa: F401

    cases: list[tuple[ConnectionFields, dict[str, object]]] = [
        (ConnectionFields("w", "wasb", login="acct", password="a2V5"),
         {"account_url": "https://acct.blob.core.windows.net", "key": True}),
        (ConnectionFields("w", "wasb", host="https://acct.blob.core.windows.net/",
                          extra={"sas_token": "sv=2020&sig=abc"}),
         {"account_url": "https://acct.blob.core.windows.net", "key": False}),
        (ConnectionFields("w", "wasb", extra={
            "sas_token": "https://other.blob.core.windows.net/?sv=2020&sig=abc"}),
         {"account_url": "https://other.blob.core.windows.net", "key": False}),
    ]
    for wasb, expected in cases:
        storage = connection_storage(_repo("az://cont/p", wasb_conn_id="w"), _lookup(w=wasb))
        fs: Any = _fs(storage)
        assert fs.service_client.url.partition("?")[0].rstrip("/") == expected["account_url"]
        assert (fs.service_client.credential is not None
                and hasattr(fs.service_client.credential, "account_key")) is expected["key"]
        assert "a2V5" not in repr(storage) and "sig=abc" not in repr(storage)


def _fs(storage: object) -> object:
    seen = storage
    for _ in range(10):
        fs = getattr(seen, "fs", None)
        if fs is not None:
            return fs
        seen = getattr(seen, "inner", None) or getattr(seen, "_inner", None) or getattr(
            seen, "_store", None) or getattr(seen, "backend", None)
    raise AssertionError("no fsspec filesystem under the storage")


def test_azure_connection_errors() -> None:
    for wasb, expected in [
        (ConnectionFields("w", "wasb"), "set its login (the storage account name)"),
        (ConnectionFields("w", "wasb", host="http://127.0.0.1:1", password="a2V5"),
         "an account key needs the account name"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            connection_storage(_repo("az://c/p", wasb_conn_id="w"), _lookup(w=wasb))
    with pytest.raises(ConfigError, match="takes no query options"):
        connection_storage(_repo("az://c/p?account_name=x", wasb_conn_id="w"),
                           _lookup(w=ConnectionFields("w", login="a", password="a2V5")))
