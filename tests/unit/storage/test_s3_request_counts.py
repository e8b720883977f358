"""The S3 requests of single storage operations (issue 26), counted by bench/latency_proxy.py
in front of the session's moto server (no latency added): a whole-file load is one GET, an
empty listing one LIST, a remove one HEAD and one DELETE. Counts, never timings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_backup.errors import NotFound
from airflow_backup.storage.base import FileType, Handle, Storage
from airflow_backup.storage.fsspec_store import FsspecStorage
from airflow_backup.storage.registry import open_storage
from airflow_backup.storage.retry import RetryingStorage
from support.counting_proxy import counting_proxy, requests_made
from support.moto import MotoServer


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[Any]:
    with counting_proxy(moto_server.endpoint) as p:
        yield p


@pytest.fixture
def store(proxy: Any, s3_bucket: str) -> Storage:
    storage = open_storage(f"s3:{proxy.endpoint}/{s3_bucket}/repo")
    assert isinstance(storage, FsspecStorage)
    return storage


def test_a_whole_file_load_is_one_get_and_a_range_one_ranged_get(
        store: Storage, proxy: Any) -> None:
    handle = Handle(FileType.SNAPSHOT, "ab" * 32)
    store.save(handle, b"x" * 1000)
    proxy.reset()
    assert store.load(handle) == b"x" * 1000
    assert requests_made(proxy) == {"get": 1}
    proxy.reset()
    assert store.load(handle, 10, 5) == b"x" * 5
    assert requests_made(proxy) == {"get_range": 1}
    proxy.reset()
    with pytest.raises(NotFound):
        store.load(Handle(FileType.SNAPSHOT, "cd" * 32))
    assert requests_made(proxy) == {"get": 1}


def test_an_empty_listing_is_one_request(store: Storage, proxy: Any) -> None:
    proxy.reset()
    assert list(store.list(FileType.LOCK)) == []
    assert requests_made(proxy) == {"list": 1}


def test_a_listing_skips_directory_markers_and_reaches_pack_subdirectories(
        store: Storage, proxy: Any, moto_server: MotoServer, s3_bucket: str) -> None:
    import boto3

    env = moto_server.env()
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    for key in ("repo/data/", "repo/data/ab/", "repo/index/", "repo/index/.hidden"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"")
    pack = "ab" + "0" * 62
    store.save(Handle(FileType.DATA, pack), b"p" * 7)
    store.save(Handle(FileType.INDEX, "cd" * 32), b"i" * 3)
    proxy.reset()
    assert [(i.name, i.size) for i in store.list(FileType.DATA)] == [(pack, 7)]
    assert [(i.name, i.size) for i in store.list(FileType.INDEX)] == [("cd" * 32, 3)]
    assert requests_made(proxy) == {"list": 2}


def test_a_remove_through_the_retrying_wrapper_stats_once(store: Storage, proxy: Any) -> None:
    retrying = RetryingStorage(store)
    handle = Handle(FileType.LOCK, "ef" * 32)
    store.save(handle, b"lock")
    proxy.reset()
    retrying.remove(handle)
    assert requests_made(proxy) == {"head": 1, "delete": 1}
    proxy.reset()
    with pytest.raises(NotFound):
        retrying.remove(handle)
    # s3fs's info() follows a 404 with a LIST (is it a directory?); nothing is deleted.
    assert requests_made(proxy) in ({"head": 1}, {"head": 1, "list": 1})
