"""Fail-safe fallback repositories: if the primary cannot take a backup, the next one does.

:func:`run_with_fallback` tries a :class:`~airflow_backup.operations.spec.RepositorySpec`,
then each of its fallbacks in order. A repository is skipped when it fails with a storage
error (permanent, or transient after the retry wrapper gave up) or does not exist (a deleted
bucket, an uninitialised fallback). Every other error (bad paths, a wrong password, damaged
data, a lock held by maintenance) is the caller's to fix and is raised at once: a fallback
would fail the same way, or hide it.

With no fallbacks the primary's error is raised unchanged (a missing repository exits 10,
a transient storage error stays retryable). When every repository failed,
:class:`~airflow_backup.errors.NoRepositoryAvailable` keeps the causes' retryability and the
primary's exit code. Nothing is remembered between runs: the next run tries the primary first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, TypeVar

from airflow_backup.errors import (
    BackupError,
    NoRepositoryAvailable,
    RepositoryNotFound,
    StorageError,
    describe,
)
from airflow_backup.operations.spec import RepositorySpec, open_repository
from airflow_backup.repository.repo import Repository

__all__ = ["Attempt", "Landed", "run_with_fallback"]

log = logging.getLogger("airflow_backup.operations.fallback")

T = TypeVar("T")

#: How long a failing store gets to release its lock before it is left to go stale.
_RELEASE_WAIT_S = 5.0

#: Errors after which the next repository is tried.
FALLBACK_ERRORS: tuple[type[BackupError], ...] = (StorageError, RepositoryNotFound)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which repository is being tried (0 = primary) and why the earlier ones failed."""

    index: int
    spec: RepositorySpec
    primary: RepositorySpec
    failures: tuple[str, ...] = ()

    @property
    def degraded(self) -> bool:
        """Return whether this is not the primary repository."""
        return self.index > 0


@dataclass(frozen=True, slots=True)
class Landed(Generic[T]):
    """What the chosen repository returned, which it was, and why others were skipped."""

    value: T
    attempt: Attempt

    @property
    def degraded(self) -> bool:
        """Return whether the work landed in a fallback instead of the primary."""
        return self.attempt.degraded


def _release_in_background(lock: AbstractContextManager[object]) -> None:
    """Release a lock on a failing store without waiting out its retry budget; if the store
    stays down the lock is left behind and becomes stale (``unlock`` removes it)."""
    def release() -> None:
        with contextlib.suppress(BaseException):
            lock.__exit__(None, None, None)

    t = threading.Thread(target=release, name="release-lock", daemon=True)
    t.start()
    t.join(timeout=_RELEASE_WAIT_S)


def run_with_fallback(spec: RepositorySpec, work: Callable[[Repository, Attempt], T], *,
                      opener: Callable[[RepositorySpec], Repository] = open_repository
                      ) -> Landed[T]:
    """Run ``work`` under a shared lock in the first repository of ``spec.chain()`` that can
    take it (each waits up to its ``lock_wait`` for a conflicting lock). Raise as the module
    doc says."""
    chain = spec.chain()
    failures: list[str] = []
    causes: list[BaseException] = []
    for index, target in enumerate(chain):
        attempt = Attempt(index, target, spec, tuple(failures))
        try:
            repo = opener(target)
            lock = repo.lock(exclusive=False, retry_seconds=target.lock_wait,
                             preload_index=True)  # every backup needs the index
            lock.__enter__()
            try:
                value = work(repo, attempt)
            except BaseException:
                _release_in_background(lock)
                raise
            lock.__exit__(None, None, None)
        except FALLBACK_ERRORS as exc:
            if len(chain) == 1:
                raise
            causes.append(exc)
            failures.append(f"{target.location}: {describe(exc)}")
            if index + 1 < len(chain):
                log.warning("repository %s failed (%s); trying fallback %s",
                            target.location, describe(exc), chain[index + 1].location)
            continue
        if index:
            log.warning("backup stored in fallback repository %s (degraded): %s",
                        target.location, "; ".join(failures))
        return Landed(value, attempt)
    raise NoRepositoryAvailable("no repository could take the backup: " + "; ".join(failures),
                                causes) from causes[0]
