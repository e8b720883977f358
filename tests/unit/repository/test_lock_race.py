"""Without the re-check wait (strongly consistent storage), exclusive locks still exclude."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from airflow_backup.errors import RepositoryLocked
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.locks import RepoLock
from airflow_backup.storage.base import is_strongly_consistent
from airflow_backup.storage.local import LocalStorage
from airflow_backup.storage.retry import RetryingStorage


def test_local_storage_is_strongly_consistent_through_wrappers(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path)
    assert is_strongly_consistent(local)
    assert is_strongly_consistent(RetryingStorage(local))
    assert not is_strongly_consistent(object())


@pytest.mark.parametrize("round_", range(20))
def test_two_racing_exclusive_lockers_never_both_win(tmp_path: Path, round_: int) -> None:
    storage = LocalStorage(tmp_path / "repo")
    storage.create_layout()
    key = Key.random()
    barrier = threading.Barrier(2)
    won: list[RepoLock] = []
    guard = threading.Lock()

    def contend() -> None:
        lock = RepoLock(storage, key, 2, exclusive=True)
        barrier.wait()
        try:
            lock.acquire(0)
        except RepositoryLocked:
            return
        with guard:
            won.append(lock)

    threads = [threading.Thread(target=contend) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) <= 1
    for lock in won:
        lock.release()
