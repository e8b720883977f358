"""The one mapping of engine errors to Airflow's retry semantics.

Engine errors whose ``retryable`` attribute is False (ConfigError, PermanentStorageError,
IntegrityError, WrongPassword, RepositoryNotFound, SourceAuthFailed, …) become
:class:`AirflowFailException`, so the task fails at once without using its retries.
Retryable ones (TransientStorageError, RepositoryLocked, SourceUnavailable, DumpFailed) are
re-raised unchanged, so Airflow's ``retries``/``retry_delay``/backoff apply. Anything that is
not an engine error passes through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from airflow_backup.errors import BackupError

__all__ = ["airflow_error", "engine_errors"]


def airflow_error(exc: BackupError) -> BaseException:
    """Return the exception a task should raise for the engine error ``exc``: ``exc`` itself
    when it is retryable, else an AirflowFailException naming its kind (no secrets: engine
    messages never hold them)."""
    if exc.retryable:
        return exc
    return AirflowFailException(f"{type(exc).__name__}: {exc} (not retryable)")


@contextmanager
def engine_errors() -> Iterator[None]:
    """Run the body; map an engine error raised in it with :func:`airflow_error`."""
    try:
        yield
    except BackupError as exc:
        mapped = airflow_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc
