"""Exceptions from fsspec/s3fs/botocore map to our storage errors; S3 URLs parse both ways."""

from __future__ import annotations

import errno
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from airflow_backup.errors import (
    ConfigError,
    NotFound,
    PermanentStorageError,
    TransientStorageError,
)
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.fsspec_store import map_error
from airflow_backup.storage.registry import open_storage
from airflow_backup.storage.remote import parse_s3_url


def _client_error(code: str, status: int) -> OSError:
    cause = ClientError({"Error": {"Code": code, "Message": "m"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    exc = OSError(errno.EIO, "translated")
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(("exc", "expected"), [
    (_client_error("NoSuchBucket", 404), PermanentStorageError),
    (_client_error("AccessDenied", 403), PermanentStorageError),
    (_client_error("InvalidAccessKeyId", 403), PermanentStorageError),
    (_client_error("SlowDown", 503), TransientStorageError),
    (_client_error("InternalError", 500), TransientStorageError),
    (_client_error("RequestTimeout", 400), TransientStorageError),
    (_client_error("Throttling", 400), TransientStorageError),
    (_client_error("TooManyRequests", 429), TransientStorageError),
    (_client_error("NoSuchKey", 404), NotFound),
    (FileNotFoundError("bucket/key"), NotFound),
    (PermissionError("nope"), PermanentStorageError),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), TransientStorageError),
    (NoCredentialsError(), PermanentStorageError),
    (TimeoutError(), TransientStorageError),
    (ConnectionResetError(), TransientStorageError),
    (OSError(errno.ENOSPC, "full"), PermanentStorageError),
    (ValueError("something odd"), PermanentStorageError),
])
def test_error_mapping(exc: BaseException, expected: type[Exception]) -> None:
    mapped = map_error(exc, "save data/ab/abc")
    assert type(mapped) is expected
    assert str(mapped).startswith("save data/ab/abc: ")


def test_messages_carry_no_server_text() -> None:
    """The service's message may echo request details; only the code is kept."""
    cause = ClientError({"Error": {"Code": "SignatureDoesNotMatch",
                                   "Message": "secret-looking AKIA123 material"},
                         "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
    exc = PermissionError("x")
    exc.__cause__ = cause
    assert "AKIA123" not in str(map_error(exc, "load config"))


def test_unreachable_endpoint_is_transient_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from support.moto import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "dummy")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dummy")

    store = open_storage(f"s3://bucket/prefix?endpoint=http://127.0.0.1:{free_port()}"
                         "&connect_timeout=2")
    started = time.monotonic()
    with pytest.raises(TransientStorageError, match="connection problem"):
        store.stat(Handle(FileType.CONFIG, "config"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("url", "endpoint", "bucket", "prefix"), [
    ("s3://bkt/some/prefix", None, "bkt", "some/prefix"),
    ("s3://bkt", None, "bkt", ""),
    ("s3:http://127.0.0.1:9000/bkt/p", "http://127.0.0.1:9000", "bkt", "p"),
    ("s3:s3.example.com/bkt/p/q", "https://s3.example.com", "bkt", "p/q"),
    ("s3://bkt/p?endpoint=http://h:1", "http://h:1", "bkt", "p"),
])
def test_parse_s3_url(url: str, endpoint: str | None, bucket: str, prefix: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert parse_s3_url(url)[:3] == (endpoint, bucket, prefix)


def test_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1234")
    assert parse_s3_url("s3://b/p")[0] == "http://127.0.0.1:1234"
    store = open_storage("s3://b/p")
    assert store.location == "s3:http://127.0.0.1:1234/b/p"


def test_bad_urls_are_config_errors() -> None:
    for url in ("s3://", "s3://b/p?colour=red", "gopher://x/y"):
        with pytest.raises(ConfigError):
            open_storage(url)


def test_location_never_shows_user_information() -> None:
    store = open_storage("s3://b/p?endpoint=http://user:hunter2@127.0.0.1:9")
    assert "hunter2" not in store.location


@pytest.mark.parametrize("url", [
    "sftp://host/backups?password=hunter2",
    "az://container/prefix?account_key=c2VjcmV0",
    "gs://bucket/prefix?token=abc",
])
def test_credentials_in_the_query_string_are_refused_without_echo(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_storage(url)
    message = str(info.value)
    assert "credentials" in message
    for secret in ("hunter2", "c2VjcmV0", "abc"):
        assert secret not in message
