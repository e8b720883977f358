"""Streamed ranged reads (``load_chunks``, issue 26): chunks add up to exactly the range, in
order, through every wrapper that passes them on; a store that cannot stream serves one
chunk from ``load``; a retried stream resumes after the last chunk handed over, so no byte
is handed over twice or lost; S3 streams one ranged GET in chunks of at most 1 MiB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.errors import NotFound, PermanentStorageError, TransientStorageError
from airflow_backup.storage import fsspec_store
from airflow_backup.storage.base import (
    ChunkedReads,
    FileType,
    Handle,
    Storage,
    load_chunks,
)
from airflow_backup.storage.cache import CachingStorage
from airflow_backup.storage.fsspec_store import FsspecStorage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.readahead import ReadAheadStorage, planned_reads
from airflow_backup.storage.registry import open_storage
from airflow_backup.storage.retry import RetryingStorage, RetryPolicy
from airflow_backup.storage.wrapper import DelegatingStorage
from support.counting_proxy import counting_proxy, requests_made
from support.moto import MotoServer

PACK = Handle(FileType.DATA, "ab" * 32)
DATA = bytes(range(256)) * 400  # 102400 bytes


class Streaming(DelegatingStorage):
    """A streaming store over memory: chunks of ``chunk`` bytes; ``breaks`` lists, per
    stream opened, after how many chunks it raises (None: it does not). Records every
    stream asked for as (offset, length) and every chunk handed over."""

    def __init__(self, inner: Storage, chunk: int = 4096,
                 breaks: list[int | None] | None = None,
                 error: type[Exception] = TransientStorageError) -> None:
        super().__init__(inner)
        self.chunk = chunk
        self.breaks = list(breaks or [])
        self.error = error
        self.asked: list[tuple[int, int]] = []
        self.closed = 0

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        self.asked.append((offset, length))
        limit = self.breaks.pop(0) if self.breaks else None
        return self._stream(handle, offset, length, limit)

    def _stream(self, handle: Handle, offset: int, length: int,
                limit: int | None) -> Iterator[bytes]:
        data = self.inner.load(handle, offset, length)
        try:
            for i, pos in enumerate(range(0, len(data), self.chunk)):
                if limit is not None and i == limit:
                    raise self.error("the connection broke")
                yield data[pos:pos + self.chunk]
        finally:
            self.closed += 1


@pytest.fixture
def memory() -> MemoryStorage:
    store = MemoryStorage()
    store.save(PACK, DATA)
    return store


def _no_sleep(_: float) -> None:
    pass


def test_a_store_that_cannot_stream_serves_one_chunk_from_load(memory: MemoryStorage) -> None:
    assert not isinstance(memory, ChunkedReads)
    assert list(load_chunks(memory, PACK, 100, 5000)) == [DATA[100:5100]]
    assert b"".join(load_chunks(memory, PACK, len(DATA) - 10, 100)) == DATA[-10:]
    with pytest.raises(NotFound):
        next(load_chunks(memory, Handle(FileType.DATA, "cd" * 32), 0, 10))


def test_chunks_add_up_to_the_range_through_the_wrappers(memory: MemoryStorage,
                                                         tmp_path: Path) -> None:
    streaming = Streaming(memory, chunk=1000)
    retrying = RetryingStorage(streaming, sleep=_no_sleep)
    readahead = ReadAheadStorage(retrying, window=64 << 10)
    cache = CachingStorage(readahead, tmp_path / "cache")
    with planned_reads():
        chunks = list(load_chunks(cache, PACK, 300, 50_000))
    assert b"".join(chunks) == DATA[300:50_300]
    assert len(chunks) == 50 and all(chunks)
    assert streaming.asked == [(300, 50_000)]


def test_read_ahead_serves_small_unplanned_reads_from_its_window(
        memory: MemoryStorage) -> None:
    streaming = Streaming(memory, chunk=1000)
    readahead = ReadAheadStorage(streaming, window=64 << 10)
    assert list(load_chunks(readahead, PACK, 0, 5000)) == [DATA[:5000]]
    assert list(load_chunks(readahead, PACK, 5000, 5000)) == [DATA[5000:10_000]]
    assert streaming.asked == [] and readahead.fetches == 1 and readahead.served == 1


def test_a_broken_stream_resumes_after_the_last_chunk_handed_over(
        memory: MemoryStorage) -> None:
    streaming = Streaming(memory, chunk=1000, breaks=[7, 0, 3])
    retrying = RetryingStorage(streaming, RetryPolicy(max_attempts=3), sleep=_no_sleep)
    chunks = list(load_chunks(retrying, PACK, 10, 20_000))
    assert b"".join(chunks) == DATA[10:20_010]
    # The second stream broke before its first chunk: the third asks for the same rest.
    assert streaming.asked == [(10, 20_000), (7010, 13_000), (7010, 13_000),
                               (10_010, 10_000)]
    assert retrying.retries == 3
    assert streaming.closed == 4  # every stream released, the broken ones at once


def test_a_stream_that_keeps_breaking_gives_up_and_a_permanent_error_is_not_retried(
        memory: MemoryStorage) -> None:
    streaming = Streaming(memory, chunk=1000, breaks=[2, 0, 0])
    retrying = RetryingStorage(streaming, RetryPolicy(max_attempts=3), sleep=_no_sleep)
    got: list[bytes] = []
    with pytest.raises(TransientStorageError, match="gave up after 3"):
        for chunk in load_chunks(retrying, PACK, 0, 20_000):
            got.append(chunk)
    assert b"".join(got) == DATA[:2000]  # only whole chunks, never a broken one
    permanent = Streaming(memory, chunk=1000, breaks=[2], error=PermanentStorageError)
    retrying = RetryingStorage(permanent, sleep=_no_sleep)
    with pytest.raises(PermanentStorageError):
        list(load_chunks(retrying, PACK, 0, 20_000))
    assert permanent.asked == [(0, 20_000)]


def test_a_caller_that_stops_early_releases_the_stream(memory: MemoryStorage) -> None:
    streaming = Streaming(memory, chunk=1000)
    retrying = RetryingStorage(streaming, sleep=_no_sleep)
    chunks = load_chunks(retrying, PACK, 0, 20_000)
    assert next(chunks) == DATA[:1000]
    chunks.close()  # type: ignore[attr-defined]  # a generator
    assert streaming.closed == 1


def test_the_cache_serves_cached_types_as_one_chunk_and_streams_data_packs(
        memory: MemoryStorage, tmp_path: Path) -> None:
    import hashlib

    index = b"an index file"
    handle = Handle(FileType.INDEX, hashlib.sha256(index).hexdigest())
    memory.save(handle, index)
    streaming = Streaming(memory, chunk=1000)
    cache = CachingStorage(streaming, tmp_path / "cache")
    assert list(load_chunks(cache, handle, 3, 5)) == [index[3:8]]
    assert cache.misses == 1 and streaming.asked == []
    assert len(list(load_chunks(cache, PACK, 0, 3000))) == 3
    assert streaming.asked == [(0, 3000)]


# ---- S3 (moto), requests counted by the latency proxy ------------------------------------


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[Any]:
    with counting_proxy(moto_server.endpoint) as p:
        yield p


@pytest.fixture
def s3_store(proxy: Any, s3_bucket: str) -> FsspecStorage:
    storage = open_storage(f"s3:{proxy.endpoint}/{s3_bucket}/stream")
    assert isinstance(storage, FsspecStorage)
    return storage


def test_s3_streams_one_ranged_get_in_chunks(s3_store: FsspecStorage, proxy: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsspec_store, "_STREAM_CHUNK", 10_000)
    body = DATA * 3
    s3_store.save(PACK, body)
    proxy.reset()
    chunks = list(load_chunks(s3_store, PACK, 1234, 250_000))
    assert b"".join(chunks) == body[1234:251_234]
    assert [len(c) for c in chunks] == [10_000] * 25
    assert requests_made(proxy) == {"get_range": 1}
    # Past the end: what there is (a short read); at or past the end: nothing.
    assert b"".join(load_chunks(s3_store, PACK, len(body) - 5, 100)) == body[-5:]
    assert list(load_chunks(s3_store, PACK, len(body), 100)) == []
    with pytest.raises(NotFound):
        list(load_chunks(s3_store, Handle(FileType.DATA, "cd" * 32), 0, 100))


def test_s3_a_stream_stopped_early_is_released_and_the_store_still_works(
        s3_store: FsspecStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsspec_store, "_STREAM_CHUNK", 10_000)
    body = DATA * 3
    s3_store.save(PACK, body)
    for _ in range(12):  # more than the connection pool: none may be left half-read
        chunks = load_chunks(s3_store, PACK, 0, len(body))
        assert next(chunks) == body[:10_000]
        chunks.close()  # type: ignore[attr-defined]  # a generator
    assert b"".join(load_chunks(RetryingStorage(s3_store), PACK, 0, len(body))) == body
