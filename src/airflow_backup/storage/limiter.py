"""A storage wrapper that limits upload and download rates (restic's ``--limit-upload`` and
``--limit-download``, in KiB/s).

:class:`TokenBucket` paces bytes: it holds up to one second's worth of tokens (restic 0.14's
limiter, a ``juju/ratelimit`` bucket, has the same capacity), each byte moved takes one, and a
transfer larger than what is in the bucket runs the bucket into debt and sleeps until the
debt is paid. A pack of several MiB thus goes out as one call and the caller waits for it, so
the average rate over any stretch longer than a second stays at the limit. One bucket is
shared by every thread of a command, as restic shares its limiter between connections.

:class:`RateLimitedStorage` charges ``save`` to the upload bucket and ``load``/``load_into``
to the download bucket; listing, stat and remove move (almost) no data and are not paced.
It sits right around the backend (see :mod:`airflow_backup.storage.compose`), so a retried
transfer is charged again, as it crosses the network again, and cache hits are never paced.

The clock and the sleep are injectable; ``slept`` and ``paced_bytes`` record what the bucket
did, so tests check the pacing on a fake clock instead of timing anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from airflow_backup.errors import ConfigError
from airflow_backup.storage.base import Handle, Storage, load_into
from airflow_backup.storage.wrapper import DelegatingStorage

__all__ = ["RateLimitedStorage", "RateLimits", "TokenBucket"]

KIB = 1024


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Upload and download limits in KiB/s; 0 means unlimited (restic's default)."""

    upload_kib: int = 0
    download_kib: int = 0

    def __post_init__(self) -> None:
        for name, value in (("--limit-upload", self.upload_kib),
                            ("--limit-download", self.download_kib)):
            if value < 0:
                raise ConfigError(f"{name} must not be negative (KiB/s; 0 is unlimited)")

    def __bool__(self) -> bool:
        return bool(self.upload_kib or self.download_kib)


class TokenBucket:
    """Pace bytes to ``rate`` per second, with a burst of ``capacity`` bytes (default: one
    second's worth). Thread-safe."""

    def __init__(self, rate: float, capacity: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ConfigError("a rate limit must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()
        #: Every sleep the bucket asked for, in seconds, in order.
        self.slept: list[float] = []
        #: Bytes charged so far.
        self.paced_bytes = 0

    def take(self, n: int) -> float:
        """Charge ``n`` bytes; sleep until they may pass. Return the seconds slept."""
        if n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            self.paced_bytes += n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            if wait > 0:
                self.slept.append(wait)
        # Sleep outside the lock: a thread that comes later sees the debt and waits
        # behind this one, so the shared rate holds without serialising the transfers.
        if wait > 0:
            self._sleep(wait)
        return wait


class RateLimitedStorage(DelegatingStorage):
    """Wraps ``inner``: saves are paced by ``upload``, loads by ``download`` (either may be
    None for unlimited)."""

    def __init__(self, inner: Storage, *, upload: TokenBucket | None = None,
                 download: TokenBucket | None = None) -> None:
        super().__init__(inner)
        self.upload = upload
        self.download = download

    @classmethod
    def from_limits(cls, inner: Storage, limits: RateLimits, *,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> RateLimitedStorage:
        """Return ``inner`` limited to ``limits`` (KiB/s, 0 unlimited)."""
        def bucket(kib: int) -> TokenBucket | None:
            return TokenBucket(kib * KIB, clock=clock, sleep=sleep) if kib else None

        return cls(inner, upload=bucket(limits.upload_kib),
                   download=bucket(limits.download_kib))

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Wait for the upload budget of ``data``, then save it."""
        if self.upload is not None:
            self.upload.take(memoryview(data).nbytes)
        self.inner.save(handle, data)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load a range, then wait until its bytes fit the download budget."""
        data = self.inner.load(handle, offset, length)
        if self.download is not None:
            self.download.take(len(data))
        return data

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read a range into ``buf``, then wait until its bytes fit the download budget."""
        n = load_into(self.inner, handle, offset, buf)
        if self.download is not None:
            self.download.take(n)
        return n
