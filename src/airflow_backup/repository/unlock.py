"""Remove lock files: the stale ones (restic's ``unlock``), or all of them (``--remove-all``).

A lock is stale when it is older than 30 minutes or was made on this host by a process that
is gone (:func:`airflow_backup.repository.locks.is_stale`). Removing the lock of a process
that still runs lets maintenance (prune) delete data that process is writing: only
``remove_all`` does that, and the caller must warn.
"""

from __future__ import annotations

import contextlib

from airflow_backup.errors import NotFound
from airflow_backup.repository.locks import LockInfo, is_stale, list_locks
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import FileType, Handle

__all__ = ["remove_locks"]


def remove_locks(repo: Repository, *, remove_all: bool = False) -> list[LockInfo]:
    """Remove stale locks (every lock with ``remove_all``); return those removed.

    Lock files that cannot be decoded with this repository's key are left alone.
    """
    removed = []
    for lock in list_locks(repo.storage, repo.key):
        if remove_all or is_stale(lock):
            with contextlib.suppress(NotFound):
                repo.storage.remove(Handle(FileType.LOCK, lock.id))
                removed.append(lock)
    return removed
