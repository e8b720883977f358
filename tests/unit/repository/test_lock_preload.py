"""On an object store, the index loads while the lock's re-check waits (issue 26): read-only
work in the wait, thrown away when the re-check finds a competing lock, and never leaving a
lock behind when it fails."""

from __future__ import annotations

import pytest

from airflow_backup.errors import IntegrityError, RepositoryLocked
from airflow_backup.repository import locks
from airflow_backup.repository.locks import RepoLock, list_locks
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage import FileType, Handle, MemoryStorage
from airflow_backup.storage.base import Capabilities

PW = "pw"


class _Remote(MemoryStorage):
    """An object store (not strongly consistent) that records index loads and lock writes
    in order, and can run a hook when the index is first loaded."""

    capabilities = Capabilities.remote()

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.on_index_load: list[object] = []

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        if handle.type is FileType.INDEX:
            self.events.append("index")
            while self.on_index_load:
                hook = self.on_index_load.pop(0)
                hook()  # type: ignore[operator]
        return super().load(handle, offset, length)

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        if handle.type is FileType.LOCK:
            self.events.append("lock")
        super().save(handle, data)


def _repo_with_a_blob() -> tuple[_Remote, bytes]:
    store = _Remote()
    repo = Repository.init(store, PW)
    blob_id, _ = repo.save_blob(BlobType.DATA, b"content")
    repo.flush()
    return store, blob_id


def test_the_index_loads_during_the_re_check_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    store, blob_id = _repo_with_a_blob()
    repo = Repository.open(store, PW)
    waits: list[float] = []
    monkeypatch.setattr(locks.time, "sleep", waits.append)
    store.events.clear()
    with repo.lock(preload_index=True):
        # Loaded between writing the lock and the re-check: the wait left is shorter.
        assert store.events == ["lock", "index"]
        assert repo.index.has(BlobType.DATA, blob_id)
    assert len(waits) == 1 and waits[0] <= locks._RECHECK_WAIT_S
    # Without it nothing is loaded, and the whole wait is slept.
    again = Repository.open(store, PW)
    store.events.clear()
    waits.clear()
    with again.lock():
        assert store.events == ["lock"]
    assert len(waits) == 1 and waits[0] == pytest.approx(locks._RECHECK_WAIT_S, abs=0.05)


def test_an_index_read_beside_a_competing_lock_is_thrown_away(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A competing exclusive lock appears while the index loads (another process locked at
    the same moment): the re-check sees it, our lock goes, and the index read is dropped,
    then read again once the lock is ours."""
    store, blob_id = _repo_with_a_blob()
    repo = Repository.open(store, PW)
    other = RepoLock(store, repo.key, 2, exclusive=True)

    def competitor_locks() -> None:
        other._id = other._write()  # written, as by a process between our write and check

    def competitor_leaves(seconds: float) -> None:
        # The retry loop's wait (a second; the re-check waits less): the other process
        # finishes and unlocks.
        if seconds >= 1.0 and other._id:
            other._remove()
            other._id = ""

    monkeypatch.setattr(locks.time, "sleep", competitor_leaves)
    store.on_index_load.append(competitor_locks)
    store.events.clear()
    with repo.lock(retry_seconds=30, preload_index=True):
        assert store.events.count("index") == 2 and store.events.count("lock") == 3
        assert repo.index.has(BlobType.DATA, blob_id)
        held = list_locks(store, repo.key)
        assert len(held) == 1 and not held[0].exclusive
    assert list(store.list(FileType.LOCK)) == []


def test_a_failed_load_in_the_wait_leaves_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _repo_with_a_blob()
    repo = Repository.open(store, PW)
    monkeypatch.setattr(locks.time, "sleep", lambda s: None)

    def damaged() -> None:
        raise IntegrityError("index/x: damaged")

    store.on_index_load.append(damaged)
    with pytest.raises(IntegrityError, match="damaged"), repo.lock(preload_index=True):
        pass
    assert list(store.list(FileType.LOCK)) == []


def test_a_held_competing_lock_still_stops_the_locker(monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _repo_with_a_blob()
    repo = Repository.open(store, PW)
    monkeypatch.setattr(locks.time, "sleep", lambda s: None)
    other = RepoLock(store, repo.key, 2, exclusive=True)
    other._id = other._write()
    with pytest.raises(RepositoryLocked), repo.lock(preload_index=True):
        pass
    assert [i.name for i in store.list(FileType.LOCK)] == [other._id]
