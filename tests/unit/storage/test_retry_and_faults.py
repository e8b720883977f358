"""The retry wrapper (backoff, bounds, logging, partial writes) and the fault injector."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time

import pytest

from airflow_backup.errors import (
    ConfigError,
    NotFound,
    PermanentStorageError,
    TransientStorageError,
)
from airflow_backup.storage.base import FileInfo, FileType, Handle
from airflow_backup.storage.compose import open_repository_storage, split_retry_options
from airflow_backup.storage.faults import FaultInjectingStorage, parse_fault_spec
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.retry import RetryingStorage, RetryPolicy


def _h(data: bytes, ft: FileType = FileType.DATA) -> Handle:
    return Handle(ft, hashlib.sha256(data).hexdigest())


class Flaky(MemoryStorage):
    """Memory storage whose ``stat`` fails ``failures`` times with ``error``."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.calls = 0

    def stat(self, handle: Handle) -> FileInfo:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().stat(handle)


def test_transient_errors_are_retried_with_full_jitter_backoff() -> None:
    inner = Flaky(5, TransientStorageError("stat x: SlowDown"))
    data = b"x"
    inner.save(_h(data), data)
    sleeps: list[float] = []
    store = RetryingStorage(inner, RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=0.25),
                            sleep=sleeps.append)
    assert store.stat(_h(data)).size == 1
    assert inner.calls == 6
    assert store.retries == 5
    caps = [min(0.25, 0.1 * 2 ** n) for n in range(5)]
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))


@pytest.mark.parametrize("error", [PermanentStorageError("denied"), NotFound("gone")])
def test_permanent_and_not_found_are_not_retried(error: Exception) -> None:
    inner = Flaky(100, error)
    store = RetryingStorage(inner, RetryPolicy(), sleep=lambda s: None)
    with pytest.raises(type(error)):
        store.stat(_h(b"x"))
    assert inner.calls == 1
    assert store.retries == 0


def test_exhausted_attempts_raise_transient_naming_the_cause() -> None:
    inner = Flaky(100, TransientStorageError("stat data/xx: ServiceUnavailable"))
    store = RetryingStorage(inner, RetryPolicy(max_attempts=4, base_delay=0.0),
                            sleep=lambda s: None)
    with pytest.raises(TransientStorageError, match=r"gave up after 4 attempt\(s\).*"
                       r"ServiceUnavailable") as info:
        store.stat(_h(b"x"))
    assert isinstance(info.value.__cause__, TransientStorageError)
    assert inner.calls == 4


def test_total_time_bounds_the_retries() -> None:
    """``max_elapsed`` stops the retries long before ``max_attempts``: no retry starts that
    its wait would take past the budget. (Counted through the waits, not with a stopwatch,
    so that a busy machine cannot fail it.)"""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    inner = Flaky(10_000, TransientStorageError("timeout"))
    store = RetryingStorage(inner, RetryPolicy(max_attempts=10_000, base_delay=0.05,
                                               max_delay=0.1, max_elapsed=0.5), sleep=sleep)
    with pytest.raises(TransientStorageError, match="gave up"):
        store.stat(_h(b"x"))
    assert waits and sum(waits) <= 0.5
    assert inner.calls == len(waits) + 1 < 20


def test_every_retry_is_logged_with_attempt_delay_and_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = Flaky(2, TransientStorageError("stat data/ab/abc: RequestTimeout"))
    inner.save(_h(b"x"), b"x")
    store = RetryingStorage(inner, RetryPolicy(max_attempts=5, base_delay=0.0),
                            sleep=lambda s: None)
    with caplog.at_level(logging.WARNING, logger="airflow_backup.storage.retry"):
        store.stat(_h(b"x"))
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2
    assert "attempt 1 of 5" in msgs[0] and "attempt 2 of 5" in msgs[1]
    assert all("retrying in 0.00 s" in m and "RequestTimeout" in m for m in msgs)


def test_retried_save_after_lost_reply_or_truncated_write() -> None:
    backing = MemoryStorage()
    data = bytes(range(256)) * 100
    h = _h(data)
    # The first save stores everything and then fails (lost reply).
    lost = FaultInjectingStorage(backing, fail_on_calls={1}, lost_replies=1.0)
    RetryingStorage(lost, RetryPolicy(base_delay=0.0), sleep=lambda s: None).save(h, data)
    assert backing.load(h) == data
    # The first save leaves half the file under the final name, then fails.
    backing2 = MemoryStorage()
    cut = FaultInjectingStorage(backing2, fail_on_calls={1}, truncate_writes=1.0)
    RetryingStorage(cut, RetryPolicy(base_delay=0.0), sleep=lambda s: None).save(h, data)
    assert backing2.load(h) == data


def test_retry_policy_from_options() -> None:
    p = RetryPolicy.from_options({"retry_attempts": "3", "retry_max_time": "9.5"})
    assert (p.max_attempts, p.max_elapsed, p.base_delay) == (3, 9.5, RetryPolicy().base_delay)
    with pytest.raises(ConfigError):
        RetryPolicy.from_options({"retry_attempts": "many"})
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)


def test_url_retry_options_are_per_repository() -> None:
    url, opts = split_retry_options("s3://b/p?region=x&retry_attempts=2")
    assert url == "s3://b/p?region=x"
    assert opts == {"retry_attempts": "2"}
    assert split_retry_options("/tmp/odd?retry_attempts=2") == ("/tmp/odd?retry_attempts=2", {})


# ---- fault injection -------------------------------------------------------------------


def test_fail_on_the_kth_call() -> None:
    store = FaultInjectingStorage(MemoryStorage(), fail_on_calls={3})
    store.exists(_h(b"a"))
    store.exists(_h(b"a"))
    with pytest.raises(TransientStorageError, match="injected fault"):
        store.exists(_h(b"a"))
    store.exists(_h(b"a"))
    assert (store.calls, store.injected) == (4, 1)


def test_fail_after_k_writes_permanently() -> None:
    store = FaultInjectingStorage(MemoryStorage(), fail_after_writes=2, permanent=True)
    for data in (b"1", b"2"):
        store.save(_h(data), data)
    with pytest.raises(PermanentStorageError):
        store.save(_h(b"3"), b"3")
    assert store.load(_h(b"1")) == b"1"  # reads still work


def test_failure_rate_is_reproducible_and_close_to_the_rate() -> None:
    def failures(seed: int) -> list[int]:
        store = FaultInjectingStorage(MemoryStorage(), failure_rate=0.2, seed=seed)
        out = []
        for i in range(2000):
            try:
                store.exists(_h(b"x"))
            except TransientStorageError:
                out.append(i)
        return out

    assert failures(1) == failures(1)
    assert 300 < len(failures(1)) < 500


def test_latency_is_added_to_every_call() -> None:
    slept: list[float] = []
    store = FaultInjectingStorage(MemoryStorage(), latency=0.05, failure_rate=0.5, seed=3,
                                  sleep=slept.append)
    for _ in range(50):
        with contextlib.suppress(TransientStorageError):
            store.exists(_h(b"x"))
    assert slept == [0.05] * 50


def test_truncated_write_leaves_half_a_file() -> None:
    backing = MemoryStorage()
    store = FaultInjectingStorage(backing, failure_rate=1.0, truncate_writes=1.0)
    with pytest.raises(TransientStorageError):
        store.save(_h(b"abcdef"), b"abcdef")
    assert backing.load(_h(b"abcdef")) == b"abc"


def test_fault_spec_parsing() -> None:
    assert parse_fault_spec("failure_rate=0.2, latency=0.05,seed=1,fail_on_calls=3+7,"
                            "operations=save+load,permanent=true") == {
        "failure_rate": 0.2, "latency": 0.05, "seed": 1, "fail_on_calls": [3, 7],
        "operations": ["save", "load"], "permanent": True}
    for bad in ("failure_rate=lots", "colour=red", "latency"):
        with pytest.raises(ConfigError):
            parse_fault_spec(bad)
    with pytest.raises(ConfigError):
        FaultInjectingStorage(MemoryStorage(), failure_rate=1.5)


def test_composition_retries_outside_fault_injection() -> None:
    store = open_repository_storage(backend=MemoryStorage(),
                                    policy=RetryPolicy(max_attempts=50, base_delay=0.0),
                                    faults={"failure_rate": 0.5, "seed": 11})
    assert isinstance(store, RetryingStorage)
    assert isinstance(store.inner, FaultInjectingStorage)
    for i in range(30):
        data = b"%d" % i
        store.save(_h(data), data)
        assert store.load(_h(data)) == data
    assert store.retries > 0
    with pytest.raises(ConfigError):
        open_repository_storage()
