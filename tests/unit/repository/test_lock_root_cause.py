"""When the work under a lock fails because the store went down, releasing the lock fails
too; the caller must see the work's error (the root cause), not the lock bookkeeping's."""

from __future__ import annotations

import pytest

from airflow_backup.errors import TransientStorageError
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import Handle
from airflow_backup.storage.memory import MemoryStorage


class _Outage(MemoryStorage):
    """A store that goes down on demand: every removal then fails."""

    down = False

    def remove(self, handle: Handle) -> None:
        if self.down:
            raise TransientStorageError("connection reset by peer")
        super().remove(handle)


def test_a_failed_lock_release_does_not_hide_the_error_of_the_work() -> None:
    store = _Outage()
    Repository.init(store, "pw", kdf=KdfParams(1024, 8, 1))
    repo = Repository.open(store, "pw")
    with (pytest.raises(TransientStorageError, match="upload of pack 1234 failed"),
          repo.lock(exclusive=False)):
        store.down = True
        raise TransientStorageError("upload of pack 1234 failed")
    store.down = False


def test_a_failed_release_after_successful_work_is_reported() -> None:
    store = _Outage()
    Repository.init(store, "pw", kdf=KdfParams(1024, 8, 1))
    repo = Repository.open(store, "pw")
    with (pytest.raises(TransientStorageError, match="connection reset"),
          repo.lock(exclusive=False)):
        store.down = True
    store.down = False
