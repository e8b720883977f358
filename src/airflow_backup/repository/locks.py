"""Repository locks, restic's protocol: check, create, wait, re-check; refresh while held.

A lock is stale when its time is more than 30 minutes old, or when it was made on this host by
a process that no longer exists. Non-exclusive locks coexist; an exclusive lock admits no other.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from airflow_backup.errors import (
    BackupError,
    IntegrityError,
    NotFound,
    PermanentStorageError,
    RepositoryLocked,
)
from airflow_backup.repository import gojson
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.timefmt import format_time, parse_ns
from airflow_backup.repository.unpacked import decode_unpacked, save_json
from airflow_backup.storage.base import FileType, Handle, Storage, is_strongly_consistent

__all__ = ["LockInfo", "RepoLock", "is_stale", "list_locks", "pid_namespace"]

_log = logging.getLogger(__name__)

STALE_AFTER_S = 30 * 60
REFRESH_EVERY_S = 5 * 60
# A lock not refreshed for this many refresh intervals short of the stale age may be removed
# by another process before the next write lands (restic's refreshability margin).
_FRESH_MARGIN_REFRESHES = 1.5
_RECHECK_WAIT_S = 0.2


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A lock file's content."""

    id: str
    time_ns: int
    exclusive: bool
    hostname: str
    username: str
    pid: int
    #: The PID namespace the process ran in (``pid:[inode]``, an extra field restic ignores);
    #: '' in locks written by restic or by older versions.
    pidns: str = ""

    def pid_checkable(self) -> bool:
        """Return whether this host can tell if the lock's process still runs: same host,
        and the same PID namespace (a container's PID 1 is not this host's PID 1)."""
        if self.hostname != socket.gethostname():
            return False
        if self.pidns:
            return self.pidns == pid_namespace()
        return self.pid != 1  # an older lock with PID 1 was made inside a container

    def holder(self) -> str:
        """Return who holds the lock, and what to do if it is gone, for messages."""
        where = f"PID {self.pid} on {self.hostname} by {self.username} (lock {self.id[:8]})"
        if self.hostname == socket.gethostname() and not self.pid_checkable():
            return (f"{where}, in another PID namespace (a container?), so this host cannot "
                    "tell whether it still runs; if it is gone, run 'airflow-backup unlock "
                    "--remove-all' (it also goes stale 30 minutes after its last refresh)")
        if self.hostname != socket.gethostname():
            return (f"{where}; if that process is gone, run 'airflow-backup unlock "
                    "--remove-all' (the lock goes stale 30 minutes after its last refresh)")
        return f"{where}; run 'airflow-backup unlock' if that process is gone"


def pid_namespace() -> str:
    """Return this process's PID namespace (``pid:[inode]``), or '' where there is none."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    if pid <= 0 or pid > 0x7FFFFFFF:
        return False  # not a process id: 0 and negatives would signal process groups
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def is_stale(lock: LockInfo, now_ns: int | None = None) -> bool:
    """Return whether ``lock`` is stale (older than 30 min, or a dead process on this host)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if now_ns - lock.time_ns > STALE_AFTER_S * 1_000_000_000:
        return True
    return lock.pid_checkable() and not _pid_alive(lock.pid)


def list_locks(storage: Storage, key: Key, *, skip: str = "") -> list[LockInfo]:
    """Return every readable lock but the one named ``skip`` (not even loaded: a process's
    own lock, which it knows); locks that vanish or fail to decode meanwhile are skipped."""
    out = []
    for info in storage.list(FileType.LOCK):
        if skip and info.name == skip:
            continue
        try:
            raw = decode_unpacked(key, storage.load(Handle(FileType.LOCK, info.name)), "lock")
            obj = gojson.loads(raw)  # never RecursionError on deeply nested hostile JSON
            out.append(LockInfo(info.name, parse_ns(obj["time"])[0], bool(obj.get("exclusive")),
                                str(obj.get("hostname", "")), str(obj.get("username", "")),
                                int(obj.get("pid", 0)), str(obj.get("pidns", ""))))
        except (NotFound, IntegrityError, KeyError, ValueError, TypeError, AttributeError,
                OverflowError):
            continue  # unreadable or vanished: another process's business
    return out


class RepoLock:
    """A held lock; refreshed by a daemon thread until :meth:`release`."""

    def __init__(self, storage: Storage, key: Key, version: int, exclusive: bool) -> None:
        self._storage = storage
        self._key = key
        self._version = version
        self.exclusive = exclusive
        self._id = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        #: The last refresh failure, if the latest attempt failed (None once one succeeds).
        self.refresh_error: BackupError | None = None
        # (time.monotonic(), time.time()) when the lock file now in place began to be written.
        self._written_at = (0.0, 0.0)

    def _write(self) -> str:
        try:
            username = getpass.getuser()
        except (KeyError, OSError):
            username = ""
        obj = {
            "time": format_time(datetime.now(UTC).astimezone()),
            "exclusive": self.exclusive,
            "hostname": socket.gethostname(),
            "username": username,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "gid": os.getgid(),
        }
        if pid_namespace():
            obj["pidns"] = pid_namespace()
        return save_json(self._storage, self._key, FileType.LOCK, obj, self._version)

    def _conflicts(self) -> list[LockInfo]:
        # Our own lock is not loaded: one round trip less on object stores, every command.
        return [
            lk for lk in list_locks(self._storage, self._key, skip=self._id)
            if (self.exclusive or lk.exclusive) and not is_stale(lk)
        ]

    def acquire(self, retry_seconds: float = 0.0, *,
                meanwhile: Callable[[], None] | None = None,
                on_conflict: Callable[[], None] | None = None) -> None:
        """Take the lock. Raise RepositoryLocked if a conflicting lock stays for longer than
        ``retry_seconds``.

        On a store that is not strongly consistent, the lock is written, then checked again
        after a wait that gives a competing lock time to show up. ``meanwhile`` (read-only
        work, such as loading the index) runs during that wait instead of sleeping through
        it; if the check then finds a conflicting lock, ``on_conflict`` is called to throw
        its result away (a lock holder may have been changing what it read), and it runs
        again at the next attempt. If ``meanwhile`` raises, the lock is removed and the
        error raised."""
        started = time.monotonic()
        deadline = started + retry_seconds
        waited = False
        while True:
            conflicts = self._conflicts()
            if not conflicts:
                self._written_at = (time.monotonic(), time.time())
                try:
                    self._id = self._write()
                except PermanentStorageError as exc:
                    if self.exclusive:
                        raise
                    raise PermanentStorageError(
                        f"cannot write a lock into the repository ({exc}); if it is "
                        "read-only, use --no-lock for commands that only read") from exc
                if not is_strongly_consistent(self._storage):
                    # Give a competing lock written at the same moment time to show up.
                    waited_from = time.monotonic()
                    if meanwhile is not None:
                        try:
                            meanwhile()
                        except BaseException:
                            with contextlib.suppress(BackupError, OSError):
                                self._remove()
                            self._id = ""
                            raise
                    time.sleep(max(0.0, _RECHECK_WAIT_S - (time.monotonic() - waited_from)))
                conflicts = self._conflicts()
                if not conflicts:
                    break
                self._remove()
                if meanwhile is not None and on_conflict is not None:
                    on_conflict()
            if not waited and retry_seconds > 0:
                # A wait can last minutes: say whom it waits for (a task log shows this).
                waited = True
                _log.info("waiting up to %.0fs for the repository lock held by %s",
                          retry_seconds, conflicts[0].holder())
            if time.monotonic() >= deadline:
                other = conflicts[0]
                kind = "exclusive" if other.exclusive else "non-exclusive"
                raise RepositoryLocked(
                    f"repository is already locked ({kind}) by {other.holder()}")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if waited:
            _log.info("repository lock taken after waiting %.1fs", time.monotonic() - started)
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name="lock-refresh")
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY_S):
            with self._refresh_lock:
                if self._stop.is_set():
                    return
                old = self._id
                started = (time.monotonic(), time.time())
                try:
                    self._id = self._write()
                except BackupError as exc:
                    # Keep trying: a lock left un-refreshed goes stale after 30 minutes;
                    # writers learn of it through check_fresh().
                    self.refresh_error = exc
                    continue
                self._written_at = started
                self.refresh_error = None
                self._remove(old)

    def check_fresh(self) -> None:
        """Raise RepositoryLocked if the held lock may have gone stale: its last successful
        write began more than the stale age less 1.5 refresh intervals ago (refreshes failed,
        or the machine slept), so another process may count it as stale and, e.g., prune
        what this one wrote. Call before writing anything that refers to earlier writes (index,
        snapshot). A lock not held passes."""
        if not self._id:
            return
        # The monotonic clock stops while the machine sleeps; other hosts judge by the
        # wall clock. The older of the two ages counts.
        age = max(time.monotonic() - self._written_at[0], time.time() - self._written_at[1])
        limit = STALE_AFTER_S - _FRESH_MARGIN_REFRESHES * REFRESH_EVERY_S
        if age > limit:
            cause = (f" (last refresh error: {self.refresh_error})"
                     if self.refresh_error is not None else "")
            raise RepositoryLocked(
                f"lock {self._id[:8]} was last refreshed {age:.0f}s ago and may be taken for "
                f"stale by other processes (stale after {STALE_AFTER_S}s); stopping before "
                f"writing more to the repository{cause}")

    def _remove(self, lock_id: str | None = None) -> None:
        lock_id = lock_id or self._id
        if lock_id:
            with contextlib.suppress(NotFound):
                self._storage.remove(Handle(FileType.LOCK, lock_id))

    def release(self) -> None:
        """Stop refreshing and delete the lock file."""
        self._stop.set()
        with self._refresh_lock:  # a refresh in progress finishes before the lock goes
            self._remove()
            self._id = ""
        if self._thread is not None:
            self._thread.join()
