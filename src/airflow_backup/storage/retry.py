"""The one storage wrapper that retries: exponential backoff with full jitter (tenacity).

Only :class:`~airflow_backup.errors.TransientStorageError` is retried; ``NotFound`` and
``PermanentStorageError`` pass through at once. Retries are bounded by a number of attempts
and by a total time (no sleep starts that would end past the deadline). Every retry is
logged on the ``airflow_backup.storage.retry`` logger at WARNING with the operation, the file,
the attempt, the delay and the cause (our error message, which never holds a secret). When
the budget is spent, a TransientStorageError saying so is raised from the last cause.

A save that is retried first checks what the failed attempt left behind: the complete file
counts as saved, a truncated prefix of it is removed first. A streamed read
(:meth:`RetryingStorage.load_chunks`) that breaks is resumed after the last chunk it handed
over, with a new request for the rest of the range.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from airflow_backup.errors import ConfigError, NotFound, TransientStorageError
from airflow_backup.storage.base import (
    FileInfo,
    FileType,
    Handle,
    Storage,
    close_chunks,
    load_chunks,
    load_into,
    object_path,
)
from airflow_backup.storage.wrapper import DelegatingStorage

if TYPE_CHECKING:
    import tenacity

__all__ = ["RetryPolicy", "RetryingStorage"]

log = logging.getLogger("airflow_backup.storage.retry")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Delays are ``uniform(0, min(max_delay, base_delay * 2**n))``.

    ``max_attempts`` counts the first try (1 disables retrying); ``max_elapsed`` bounds the
    whole operation in seconds, sleeping included.
    """

    max_attempts: int = 10
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_elapsed: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("retry attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_elapsed <= 0:
            raise ConfigError("retry delays must be >= 0 and the time budget > 0")

    @classmethod
    def from_options(cls, options: dict[str, str], base: RetryPolicy | None = None
                     ) -> RetryPolicy:
        """Return ``base`` (or the default) with ``retry_attempts``, ``retry_base_delay``,
        ``retry_max_delay`` and ``retry_max_time`` from ``options`` applied. Raise
        ConfigError on a bad value."""
        base = base or cls()
        names = {"retry_attempts": "max_attempts", "retry_base_delay": "base_delay",
                 "retry_max_delay": "max_delay", "retry_max_time": "max_elapsed"}
        values: dict[str, float | int] = {
            "max_attempts": base.max_attempts, "base_delay": base.base_delay,
            "max_delay": base.max_delay, "max_elapsed": base.max_elapsed,
        }
        for key, field_name in names.items():
            if key in options:
                try:
                    values[field_name] = (int(options[key]) if field_name == "max_attempts"
                                          else float(options[key]))
                except ValueError:
                    raise ConfigError(f"invalid {key}={options[key]!r}") from None
        return cls(int(values["max_attempts"]), float(values["base_delay"]),
                   float(values["max_delay"]), float(values["max_elapsed"]))


class RetryingStorage(DelegatingStorage):
    """Wraps a Storage; retries transient failures according to ``policy``. Every call is
    retried; location and capabilities are the wrapped store's.

    ``sleep`` is injectable for tests. ``retries`` counts the retries made so far.
    """

    def __init__(self, inner: Storage, policy: RetryPolicy | None = None, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self.retries = 0

    def _call(self, op: str, target: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        # Most calls succeed at once: make the first attempt without building a Retrying
        # (its set-up is costly next to a small local read). A transient failure then
        # enters the retry loop as its first attempt, replayed without calling again.
        try:
            return fn()
        except TransientStorageError as exc:
            first: list[BaseException] = [exc]

        def attempt() -> T:
            if first:
                raise first.pop()
            return fn()

        return self._retry(op, target, attempt, started)

    def _retry(self, op: str, target: str, fn: Callable[[], T], started: float) -> T:
        # Loaded on the first transient failure, not at start-up: importing it would slow
        # every command's start.
        import tenacity

        p = self.policy

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning("storage %s %s failed (attempt %d of %d), retrying in %.2f s: %s",
                        op, target, state.attempt_number, p.max_attempts, delay, exc)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientStorageError),
            wait=tenacity.wait_random_exponential(multiplier=p.base_delay, max=p.max_delay),
            stop=(tenacity.stop_after_attempt(p.max_attempts)
                  | tenacity.stop_before_delay(p.max_elapsed)),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=False,
        )
        try:
            return retrying(fn)
        except tenacity.RetryError as err:
            last = err.last_attempt.exception()
            attempts = err.last_attempt.attempt_number
            elapsed = time.monotonic() - started
            log.error("storage %s %s: giving up after %d attempt(s) in %.1f s: %s",
                      op, target, attempts, elapsed, last)
            raise TransientStorageError(
                f"{op} {target}: gave up after {attempts} attempt(s) in {elapsed:.1f} s: {last}"
            ) from last

    # ---- the Storage protocol ------------------------------------------------------------

    def create_layout(self) -> None:
        """Create the layout, retrying transient failures."""
        self._call("create_layout", self.location, self.inner.create_layout)

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save, retrying; a retry first checks what the failed attempt left behind."""
        first = True

        def attempt() -> None:
            nonlocal first
            if not first and self._settle_partial(handle, data):
                return
            first = False
            self.inner.save(handle, data)

        self._call("save", object_path(handle), attempt)

    def _settle_partial(self, handle: Handle, data: bytes | bytearray | memoryview) -> bool:
        """Return True if the failed attempt stored ``data`` completely; remove what it left
        if that is a truncated prefix of ``data``; leave anything else (another writer's
        file: the save then refuses to overwrite it)."""
        try:
            stored = self.inner.load(handle)
        except NotFound:
            return False
        if stored == data:
            return True
        if len(stored) < len(data) and data[: len(stored)] == stored:
            with contextlib.suppress(NotFound):
                self.inner.remove(handle)
        return False

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load a range, retrying transient failures."""
        return self._call("load", object_path(handle),
                          lambda: self.inner.load(handle, offset, length))

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        """Stream a range (see :func:`~airflow_backup.storage.base.load_chunks`), retrying
        transient failures: a stream that breaks is replaced by a new one for the bytes not
        yet handed over, so the chunks still add up to the range exactly once. Each chunk
        has the policy's attempts and time: a stream that keeps making progress goes on."""
        path = object_path(handle)
        done = 0
        stream: Iterator[bytes] | None = None

        def attempt() -> bytes | None:
            nonlocal stream
            try:
                if stream is None:
                    stream = load_chunks(self.inner, handle, offset + done, length - done)
                return next(stream, None)
            except BaseException:
                # A broken stream is never read again: the next attempt asks anew.
                if stream is not None:
                    close_chunks(stream)
                stream = None
                raise

        try:
            while done < length:
                chunk = self._call("load", path, attempt)
                if chunk is None:  # the end of the file
                    return
                done += len(chunk)
                yield chunk
        finally:
            if stream is not None:
                close_chunks(stream)

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read a range into ``buf`` (see :func:`~airflow_backup.storage.base.load_into`),
        retrying transient failures."""
        return self._call("load", object_path(handle),
                          lambda: load_into(self.inner, handle, offset, buf))

    def stat(self, handle: Handle) -> FileInfo:
        """Stat, retrying transient failures."""
        return self._call("stat", object_path(handle), lambda: self.inner.stat(handle))

    def exists(self, handle: Handle) -> bool:
        """Check existence, retrying transient failures."""
        return self._call("exists", object_path(handle), lambda: self.inner.exists(handle))

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """List (the whole listing is one retried operation)."""
        return iter(self._call("list", file_type.value + "/",
                               lambda: list(self.inner.list(file_type))))

    def remove(self, handle: Handle) -> None:
        """Remove, retrying. Raise NotFound if the file is missing before the first attempt;
        NotFound after a failed attempt means that attempt did remove it."""
        # No stat of our own: the store's remove raises NotFound for a missing file, and a
        # NotFound from the first attempt is passed on as it is.
        first = True

        def attempt() -> None:
            nonlocal first
            try:
                self.inner.remove(handle)
            except NotFound:
                if first:
                    raise
            finally:
                first = False

        self._call("remove", object_path(handle), attempt)
