"""The rate limiter (--limit-upload/--limit-download): pacing checked on a fake clock, never
by timing anything."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from airflow_backup.cli.context import GlobalOptions, repository_spec
from airflow_backup.errors import ConfigError
from airflow_backup.storage.base import FileType, Handle, load_into
from airflow_backup.storage.compose import open_repository_storage
from airflow_backup.storage.faults import FaultInjectingStorage
from airflow_backup.storage.limiter import RateLimitedStorage, RateLimits, TokenBucket
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.retry import RetryingStorage

KIB = 1024


class FakeClock:
    """A clock that only moves when the code under test sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def _h(data: bytes) -> Handle:
    return Handle(FileType.DATA, hashlib.sha256(data).hexdigest())


def test_bucket_lets_a_second_of_burst_pass_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100 * KIB, clock=clock, sleep=clock.sleep)
    assert bucket.take(100 * KIB) == 0.0  # a full bucket: one second's worth at once
    assert bucket.take(50 * KIB) == pytest.approx(0.5)
    assert bucket.take(200 * KIB) == pytest.approx(2.0)
    assert clock.sleeps == pytest.approx([0.5, 2.0])
    assert bucket.slept == pytest.approx(clock.sleeps)
    assert bucket.paced_bytes == 350 * KIB
    # 350 KiB took 2.5 s: 100 KiB of burst plus 250 KiB at 100 KiB/s.
    assert clock.now - 1000.0 == pytest.approx(2.5)


def test_a_later_caller_waits_behind_an_unpaid_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100 * KIB, clock=clock, sleep=lambda s: None)  # sleeps do not pass
    bucket.take(300 * KIB)  # 200 KiB of debt, 2 s
    assert bucket.take(100 * KIB) == pytest.approx(3.0)  # behind the debt, not beside it


def test_bucket_refills_while_idle_but_never_beyond_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10 * KIB, clock=clock, sleep=clock.sleep)
    bucket.take(10 * KIB)
    clock.now += 3600  # idle for an hour: still only one second's worth of burst
    assert bucket.take(10 * KIB) == 0.0
    assert bucket.take(5 * KIB) == pytest.approx(0.5)
    assert bucket.take(0) == 0.0


def test_long_run_throughput_is_the_limit() -> None:
    """Many pack-sized saves through the wrapper: the fake time spent equals the bytes over
    the rate (less the initial burst), so the average throughput is the limit."""
    clock = FakeClock()
    inner = MemoryStorage()
    limited = RateLimitedStorage.from_limits(inner, RateLimits(upload_kib=512),
                                             clock=clock, sleep=clock.sleep)
    total = 0
    for i in range(40):
        blob = bytes([i]) * (256 * KIB + i)
        limited.save(_h(blob), blob)
        total += len(blob)
    assert limited.upload is not None and limited.download is None
    assert limited.upload.paced_bytes == total
    elapsed = clock.now - 1000.0
    assert elapsed == pytest.approx((total - 512 * KIB) / (512 * KIB))
    assert total / elapsed == pytest.approx(512 * KIB, rel=0.06)
    assert all(s > 0 for s in clock.sleeps)
    assert len(list(inner.list(FileType.DATA))) == 40


def test_downloads_are_paced_by_their_own_bucket_for_load_and_load_into() -> None:
    clock = FakeClock()
    inner = MemoryStorage()
    blob = b"x" * (300 * KIB)
    handle = _h(blob)
    inner.save(handle, blob)
    limited = RateLimitedStorage.from_limits(inner, RateLimits(download_kib=100),
                                             clock=clock, sleep=clock.sleep)
    assert limited.load(handle) == blob
    assert clock.sleeps == pytest.approx([2.0])
    buf = memoryview(bytearray(100 * KIB))
    assert load_into(limited, handle, 0, buf) == 100 * KIB
    assert clock.sleeps == pytest.approx([2.0, 1.0])
    limited.save(_h(b"y"), b"y")  # uploads are unlimited here
    assert len(clock.sleeps) == 2
    assert limited.download is not None and limited.download.paced_bytes == 400 * KIB


def test_threads_share_one_budget() -> None:
    clock = FakeClock()
    bucket = TokenBucket(64 * KIB, clock=clock, sleep=clock.sleep)

    def work() -> None:
        for _ in range(10):
            bucket.take(16 * KIB)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bucket.paced_bytes == 640 * KIB
    # Whatever the interleaving, the debts add up: 640 KiB less the 64 KiB burst at 64 KiB/s.
    assert sum(bucket.slept) >= (640 - 64) / 64 - 1e-6


def test_rates_are_validated() -> None:
    with pytest.raises(ConfigError):
        RateLimits(upload_kib=-1)
    with pytest.raises(ConfigError):
        TokenBucket(0)
    assert not RateLimits() and RateLimits(download_kib=1)


def test_composition_puts_the_limiter_around_the_backend() -> None:
    backend = MemoryStorage()
    store = open_repository_storage(backend=backend, limits=RateLimits(upload_kib=1000),
                                    faults={"latency": 0.0})
    assert isinstance(store, RetryingStorage)
    assert isinstance(store.inner, FaultInjectingStorage)
    limited = store.inner.inner
    assert isinstance(limited, RateLimitedStorage) and limited.inner is backend
    plain = open_repository_storage(backend=backend, limits=RateLimits())
    assert isinstance(plain, RetryingStorage) and plain.inner is backend


def test_cli_spec_opens_limited_storage_only_with_a_limit(tmp_path: Path) -> None:
    spec = repository_spec(GlobalOptions(repo=str(tmp_path / "repo")))
    plain = spec.open_storage()
    assert isinstance(plain, RetryingStorage)
    assert not isinstance(plain.inner, RateLimitedStorage)  # no limit: no limiter
    limited = repository_spec(GlobalOptions(repo=str(tmp_path / "repo"), limit_upload=10,
                                            limit_download=20))
    assert limited.limits
    store = limited.open_storage()
    assert isinstance(store, RetryingStorage)
    inner = store.inner
    assert isinstance(inner, RateLimitedStorage)
    assert inner.upload is not None and inner.upload.rate == 10 * KIB
    assert inner.download is not None and inner.download.rate == 20 * KIB
