"""Fail-safe fallback repositories: if the primary cannot take a backup, the next one does.

:func:`run_with_fallback` tries the primary repository, then each fallback in order. A
repository is skipped when it fails with a storage error (permanent, or transient after the
retry wrapper has given up) or does not exist (a deleted bucket, an uninitialised fallback).
Every other error (bad paths, a wrong password, damaged data, a lock held by maintenance) is
the caller's to fix and is raised at once: a fallback would fail the same way or hide it.

:func:`backup_with_fallback` applies that to a file backup. A snapshot stored in a fallback
records why under ``airflow_backup.degraded`` in its JSON (restic ignores unknown fields), and
the result says ``degraded`` with the reasons. Nothing is remembered between runs: the next
run tries the primary first again, and a healthy primary gives a normal, non-degraded result.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from airflow_backup.archiver.archive import Archiver, BackupOptions, BackupResult
from airflow_backup.archiver.events import ArchiveEvents
from airflow_backup.errors import BackupError, RepositoryNotFound, StorageError, describe
from airflow_backup.repository.repo import Repository

__all__ = [
    "Attempt",
    "FallbackResult",
    "RepositoryTarget",
    "backup_with_fallback",
    "run_with_fallback",
]

log = logging.getLogger("airflow_backup.jobs.fallback")

T = TypeVar("T")

_RELEASE_WAIT_S = 5.0

#: Errors after which the next repository is tried.
FALLBACK_ERRORS: tuple[type[BackupError], ...] = (StorageError, RepositoryNotFound)


@dataclass(frozen=True, slots=True)
class RepositoryTarget:
    """A repository to try: a label for messages (its location, no secrets) and a function
    that opens it (storage with retries, key, config)."""

    location: str
    open: Callable[[], Repository]


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which repository is being tried (0 = primary) and why the earlier ones failed."""

    index: int
    location: str
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def degraded(self) -> bool:
        """Return whether this is not the primary repository."""
        return self.index > 0


@dataclass(slots=True)
class FallbackResult(Generic[T]):
    """What the chosen repository returned, where it went, and whether that is degraded."""

    value: T
    location: str
    index: int
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """Return whether the work landed in a fallback instead of the primary."""
        return self.index > 0

    @property
    def reason(self) -> str:
        """Return why earlier repositories were skipped ('' when not degraded)."""
        return "; ".join(f"{loc}: {why}" for loc, why in self.failures)


def _release_in_background(lock: AbstractContextManager[object]) -> None:
    """Release a lock on a failing store without waiting out its retry budget; if the store
    stays down the lock is left behind and becomes stale (``unlock`` removes it)."""
    def release() -> None:
        with contextlib.suppress(BaseException):
            lock.__exit__(None, None, None)

    t = threading.Thread(target=release, name="release-lock", daemon=True)
    t.start()
    t.join(timeout=_RELEASE_WAIT_S)


def run_with_fallback(targets: Sequence[RepositoryTarget],
                      work: Callable[[Repository, Attempt], T], *,
                      lock_retry: float = 0.0) -> FallbackResult[T]:
    """Run ``work`` under a non-exclusive lock in the first repository that can take it.

    Raise StorageError naming every repository if none could; raise any other error at once.
    """
    if not targets:
        raise ValueError("run_with_fallback needs at least one repository")
    failures: list[tuple[str, str]] = []
    first_error: BaseException | None = None
    for index, target in enumerate(targets):
        attempt = Attempt(index, target.location, tuple(failures))
        try:
            repo = target.open()
            lock = repo.lock(exclusive=False, retry_seconds=lock_retry)
            lock.__enter__()
            try:
                value = work(repo, attempt)
            except BaseException:
                _release_in_background(lock)
                raise
            lock.__exit__(None, None, None)
        except FALLBACK_ERRORS as exc:
            first_error = first_error or exc
            failures.append((target.location, describe(exc)))
            if index + 1 < len(targets):
                log.warning("repository %s failed (%s); trying fallback %s",
                            target.location, describe(exc), targets[index + 1].location)
            continue
        if index:
            log.warning("backup stored in fallback repository %s (degraded): %s",
                        target.location, "; ".join(f"{loc}: {why}" for loc, why in failures))
        return FallbackResult(value, target.location, index, failures)
    summary = "; ".join(f"{loc}: {why}" for loc, why in failures)
    raise StorageError(f"no repository could take the backup: {summary}") from first_error


def backup_with_fallback(targets: Sequence[RepositoryTarget], options: BackupOptions, *,
                         events: ArchiveEvents | None = None,
                         lock_retry: float = 0.0) -> FallbackResult[BackupResult]:
    """Back up ``options.paths`` into the primary, or else the first healthy fallback.

    A snapshot written to a fallback carries ``airflow_backup.degraded`` = {"primary",
    "reasons"}. Raise ConfigError for bad paths, StorageError if every repository failed.
    """
    def work(repo: Repository, attempt: Attempt) -> BackupResult:
        opts = options
        if attempt.degraded:
            meta = dict(options.metadata)
            meta["degraded"] = {
                "primary": targets[0].location,
                "reasons": [f"{loc}: {why}" for loc, why in attempt.failures],
            }
            # A --parent names a snapshot of the primary; the fallback picks its own.
            opts = replace(options, metadata=meta, parent=None)
        return Archiver(repo, events).backup(opts)

    return run_with_fallback(targets, work, lock_retry=lock_retry)
