"""Pack read-ahead: many small reads of one pack cost one load of the store."""

from __future__ import annotations

import hashlib
import os

from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.faults import FaultInjectingStorage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.readahead import ReadAheadStorage


def test_small_reads_are_served_from_one_window() -> None:
    data = os.urandom(3 * 1024 * 1024)
    h = Handle(FileType.DATA, hashlib.sha256(data).hexdigest())
    counting = FaultInjectingStorage(MemoryStorage())  # counts calls, injects nothing
    counting.save(h, data)
    store = ReadAheadStorage(counting, window=1024 * 1024, windows=2)
    before = counting.calls
    offsets = range(0, len(data) - 5000, 4096)
    for off in offsets:
        assert store.load(h, off, 5000) == data[off:off + 5000]
    # 3 MiB in 1 MiB windows, each overlapping read at most once more: a handful of loads.
    assert counting.calls - before <= 6
    assert store.served >= len(offsets) - 6
    # A read at the very end returns only what exists; whole-file loads pass through.
    assert store.load(h, len(data) - 10, 100) == data[-10:]
    assert store.load(h) == data
    other = Handle(FileType.INDEX, "ab" * 32)
    counting.save(other, b"index")
    assert store.load(other, 1, 2) == b"nd"
