"""Retries of job steps, decided in one place by the error tree.

A step is retried only when its error says a retry may help (``BackupError.retryable``; see
:mod:`airflow_backup.errors`), with exponential backoff and jitter. Only the failing step is
run again: a step that succeeded is never repeated, so a retry never stores a second snapshot.
Airflow applies the same rule through :mod:`airflow_backup.provider.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from airflow_backup.errors import BackupError

__all__ = ["StepRetry", "is_retryable", "run_step"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StepRetry:
    """How often and how patiently a step is tried: ``attempts`` in all (the first
    included); delays ``initial_delay * multiplier**n`` capped at ``max_delay``, plus a random
    0..``jitter`` seconds."""

    attempts: int = 3
    initial_delay: float = 5.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: float = 1.0


def is_retryable(exc: BaseException) -> bool:
    """Return whether running the same step again may succeed: the error tree decides for
    engine errors; an OSError (a dropped connection, a full disk freed) may; anything else
    (a bug, Ctrl-C) may not."""
    if isinstance(exc, BackupError):
        return exc.retryable
    return isinstance(exc, OSError)


def run_step(fn: Callable[[], T], policy: StepRetry, *,
             on_retry: Callable[[int, BaseException, float], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> tuple[T, int]:
    """Call ``fn`` until it succeeds, its error is not retryable, or ``policy.attempts`` are
    used up; return its value and the number of attempts. ``on_retry(attempt, error,
    delay)`` is called before each wait. The last error is raised unchanged."""
    attempts = 0

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        delay = state.next_action.sleep if state.next_action else 0.0
        if on_retry is not None and exc is not None:
            on_retry(state.attempt_number, exc, delay)

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_delay, exp_base=policy.multiplier,
                              max=policy.max_delay) + wait_random(0, policy.jitter),
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            attempts += 1
            value = fn()
    return value, attempts
