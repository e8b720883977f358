"""Repository locks: restic's protocol and staleness rules."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_backup.errors import RepositoryLocked, TransientStorageError
from airflow_backup.repository import locks
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.locks import LockInfo, RepoLock, is_stale, list_locks
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_ns, parse_ns
from airflow_backup.repository.unpacked import decode_unpacked, save_json
from airflow_backup.storage import FileType, Handle, MemoryStorage
from airflow_backup.storage.base import Storage, is_strongly_consistent
from airflow_backup.storage.local import LocalStorage
from airflow_backup.storage.retry import RetryingStorage

MINUTE_NS = 60 * 1_000_000_000


def lock_names(storage: MemoryStorage) -> set[str]:
    return {i.name for i in storage.list(FileType.LOCK)}


def write_foreign_lock(storage: MemoryStorage, key: Key, *, exclusive: bool,
                       age_minutes: float = 0, hostname: str | None = None,
                       pid: int | None = None) -> str:
    """Write a lock file by hand, as another restic process would."""
    obj = {
        "time": format_ns(time.time_ns() - int(age_minutes * MINUTE_NS), 3600),
        "exclusive": exclusive,
        "hostname": socket.gethostname() if hostname is None else hostname,
        "username": "someone",
        "pid": os.getpid() if pid is None else pid,
    }
    return save_json(storage, key, FileType.LOCK, obj, 2)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_non_exclusive_locks_coexist(storage: MemoryStorage, key: Key) -> None:
    a = RepoLock(storage, key, 2, exclusive=False)
    b = RepoLock(storage, key, 2, exclusive=False)
    a.acquire()
    b.acquire()
    try:
        locks = list_locks(storage, key)
        assert len(locks) == 2 and not any(lk.exclusive for lk in locks)
    finally:
        a.release()
        b.release()
    assert lock_names(storage) == set()


@pytest.mark.parametrize(("held", "wanted"), [(False, True), (True, False), (True, True)])
def test_exclusive_conflicts_with_any_lock(storage: MemoryStorage, key: Key, held: bool,
                                           wanted: bool) -> None:
    holder = RepoLock(storage, key, 2, exclusive=held)
    holder.acquire()
    try:
        before = lock_names(storage)
        with pytest.raises(RepositoryLocked, match=f"PID {os.getpid()}") as info:
            RepoLock(storage, key, 2, exclusive=wanted).acquire(retry_seconds=0)
        assert info.value.exit_code == 11
        assert lock_names(storage) == before  # the loser leaves nothing behind
    finally:
        holder.release()
    # Once released, the same request succeeds.
    RepoLock(storage, key, 2, exclusive=wanted).acquire()


def test_foreign_exclusive_lock_blocks(storage: MemoryStorage, key: Key) -> None:
    write_foreign_lock(storage, key, exclusive=True, hostname="elsewhere", pid=1234)
    with pytest.raises(RepositoryLocked, match=r"exclusive.*elsewhere"):
        RepoLock(storage, key, 2, exclusive=False).acquire()


def test_stale_lock_is_ignored(storage: MemoryStorage, key: Key) -> None:
    write_foreign_lock(storage, key, exclusive=True, age_minutes=31, hostname="elsewhere")
    lk = RepoLock(storage, key, 2, exclusive=True)
    lk.acquire()
    lk.release()


def test_fresh_lock_of_another_host_is_not_stale(storage: MemoryStorage, key: Key) -> None:
    write_foreign_lock(storage, key, exclusive=True, age_minutes=29, hostname="elsewhere",
                       pid=dead_pid())
    with pytest.raises(RepositoryLocked):
        RepoLock(storage, key, 2, exclusive=True).acquire()


def test_lock_of_a_dead_process_on_this_host_is_ignored(storage: MemoryStorage, key: Key
                                                         ) -> None:
    write_foreign_lock(storage, key, exclusive=True, pid=dead_pid())
    lk = RepoLock(storage, key, 2, exclusive=True)
    lk.acquire()
    lk.release()


def test_lock_of_a_live_process_on_this_host_blocks(storage: MemoryStorage, key: Key) -> None:
    write_foreign_lock(storage, key, exclusive=True, pid=os.getppid())
    with pytest.raises(RepositoryLocked):
        RepoLock(storage, key, 2, exclusive=False).acquire()


def test_lock_with_an_absurd_pid_does_not_crash(storage: MemoryStorage, key: Key) -> None:
    # Such a PID cannot exist, so the lock is stale like any other dead process's.
    write_foreign_lock(storage, key, exclusive=True, pid=2**40)
    lk = RepoLock(storage, key, 2, exclusive=False)
    lk.acquire()
    lk.release()


def test_is_stale_rules() -> None:
    now = 10_000 * MINUTE_NS
    host = socket.gethostname()

    def info(age_min: float, hostname: str, pid: int) -> LockInfo:
        return LockInfo("id", now - int(age_min * MINUTE_NS), True, hostname, "u", pid)

    assert is_stale(info(30.01, "elsewhere", 1), now)
    assert not is_stale(info(29.99, "elsewhere", 1), now)
    assert not is_stale(info(0, host, os.getpid()), now)
    assert is_stale(info(0, host, dead_pid()), now)


def test_release_removes_the_lock_file(storage: MemoryStorage, key: Key) -> None:
    lk = RepoLock(storage, key, 2, exclusive=True)
    lk.acquire()
    [name] = lock_names(storage)
    assert key.open(storage.load(Handle(FileType.LOCK, name)))[0] == 0x02  # v2: zstd
    lk.release()
    assert lock_names(storage) == set()
    lk.release()  # idempotent


def test_lock_file_content(storage: MemoryStorage, key: Key) -> None:
    lk = RepoLock(storage, key, 2, exclusive=True)
    lk.acquire()
    try:
        [name] = lock_names(storage)
        obj = json.loads(decode_unpacked(key, storage.load(Handle(FileType.LOCK, name)), "l"))
        # restic's fields, in its order, then our PID namespace (restic ignores extra fields).
        assert list(obj)[:7] == ["time", "exclusive", "hostname", "username", "pid", "uid",
                                 "gid"]
        assert list(obj)[7:] in ([], ["pidns"])
        assert obj["exclusive"] is True and obj["pid"] == os.getpid()
        assert obj["hostname"] == socket.gethostname()
        assert abs(parse_ns(obj["time"])[0] - time.time_ns()) < MINUTE_NS
    finally:
        lk.release()


def test_repository_lock_context_manager_releases_on_error(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    with pytest.raises(RuntimeError), repo.lock(exclusive=True):
        assert len(lock_names(storage)) == 1
        raise RuntimeError("boom")
    assert lock_names(storage) == set()


def test_local_storage_is_strongly_consistent_through_wrappers(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path)
    assert is_strongly_consistent(local)
    assert is_strongly_consistent(RetryingStorage(local))
    assert not is_strongly_consistent(object())


@pytest.mark.parametrize("round_", range(20))
@pytest.mark.parametrize("kind", ["memory", "local"])
def test_two_racing_exclusive_lockers_never_both_win(tmp_path: Path, key: Key, kind: str,
                                                     round_: int) -> None:
    # Both kinds are strongly consistent: no re-check wait, and still only one may win.
    storage: Storage = MemoryStorage() if kind == "memory" else LocalStorage(tmp_path / "r")
    if isinstance(storage, LocalStorage):
        storage.create_layout()
    results: list[bool] = []
    locks: list[RepoLock] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        lk = RepoLock(storage, key, 2, exclusive=True)
        barrier.wait()
        try:
            lk.acquire()
        except RepositoryLocked:
            results.append(False)
        else:
            results.append(True)
            locks.append(lk)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results.count(True) <= 1
    for lk in locks:
        lk.release()
    assert {i.name for i in storage.list(FileType.LOCK)} == set()


class _LockWritesFail(MemoryStorage):
    """A store that refuses lock writes once ``fail`` is set (an outage of locks/)."""

    fail = False

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        if self.fail and handle.type is FileType.LOCK:
            raise TransientStorageError(f"save {handle}: connection refused")
        super().save(handle, data)


def _snapshot(tree: bytes) -> Snapshot:
    return Snapshot(time="2024-01-01T00:00:00Z", tree=tree, paths=["/f"], hostname="h",
                    username="u")


@pytest.mark.parametrize("refresh_fails", [False, True])
def test_no_index_or_snapshot_is_written_once_the_lock_may_be_stale(
        monkeypatch: pytest.MonkeyPatch, refresh_fails: bool) -> None:
    """While refreshes fail, the lock ages; before it could count as stale elsewhere (where a
    prune may then delete this writer's packs) index and snapshot writes stop with
    RepositoryLocked. A lock that keeps being refreshed never stops them."""
    monkeypatch.setattr(locks, "STALE_AFTER_S", 1.5)
    monkeypatch.setattr(locks, "REFRESH_EVERY_S", 0.2)  # limit: 1.5 - 1.5 * 0.2 = 1.2 s
    store = _LockWritesFail()
    repo = Repository.init(store, "pw", kdf=KdfParams(1024, 8, 1))
    with repo.lock():
        tree, _ = repo.save_tree([])
        store.fail = refresh_fails
        time.sleep(1.6)
        if refresh_fails:
            with pytest.raises(RepositoryLocked, match="connection refused"):
                repo.flush()
            with pytest.raises(RepositoryLocked, match="last refreshed"):
                repo.save_snapshot(_snapshot(tree))
        else:
            repo.save_snapshot(_snapshot(tree))
        store.fail = False
    written = {t: len(list(store.list(t))) for t in (FileType.INDEX, FileType.SNAPSHOT)}
    expected = 0 if refresh_fails else 1
    assert written == {FileType.INDEX: expected, FileType.SNAPSHOT: expected}



@pytest.mark.parametrize("payload", [
    b"[" * 200_000 + b"]" * 200_000,                                   # nesting
    b'{"time": "2026-01-01T00:00:00Z", "pid": 1e400, "hostname": 7}',   # absurd values
    b'"just a string"',
])
def test_a_hostile_lock_file_is_skipped_not_a_crash(storage: MemoryStorage, key: Key,
                                                   payload: bytes) -> None:
    """A lock file anyone with the key could write is another process's unreadable lock:
    skipped, never a RecursionError or OverflowError."""
    import hashlib

    from airflow_backup.repository.unpacked import encode_unpacked

    data = encode_unpacked(key, payload, 2)
    storage.save(Handle(FileType.LOCK, hashlib.sha256(data).hexdigest()), data)
    assert list_locks(storage, key) == []


def test_a_lock_wait_says_whom_it_waits_for_and_how_long_it_took(
        storage: MemoryStorage, key: Key, caplog: pytest.LogCaptureFixture) -> None:
    """A job step may wait minutes for a lock (lock_wait): the log (a task log in Airflow)
    names the holder when the wait starts and the time waited when the lock is taken."""
    holder = RepoLock(storage, key, 2, exclusive=True)
    holder.acquire()
    timer = threading.Timer(1.2, holder.release)
    timer.start()
    caplog.set_level("INFO", logger="airflow_backup.repository.locks")
    waiter = RepoLock(storage, key, 2, exclusive=False)
    waiter.acquire(retry_seconds=20)
    waiter.release()
    timer.join()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith(f"waiting up to 20s for the repository lock held by PID "
                                  f"{os.getpid()} on {socket.gethostname()}")
    assert re.fullmatch(r"repository lock taken after waiting [12]\.\ds", messages[1])
    caplog.clear()
    free = RepoLock(storage, key, 2, exclusive=False)
    free.acquire(retry_seconds=20)  # no conflict: nothing to say
    free.release()
    assert caplog.records == []
