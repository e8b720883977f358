"""Read-ahead for pack files on object stores: one ranged GET serves many small blob reads.

A restore reads blobs one by one, mostly in the order they were packed. On a local disk each
read is cheap; on an object store each is a round trip. :class:`ReadAheadStorage` turns a
small ranged load of a data pack into one load of a larger window starting at the same
offset, keeps the last few windows in memory (LRU), and serves later reads that fall inside
a window without asking the store. Nothing is trusted more than before: the repository still
checks every blob's MAC and SHA-256. Loads of other file types, whole-file loads and reads
larger than the window pass straight through, and so does every load made inside
:func:`planned_reads`: a caller that already reads exactly the spans it needs (the
restorer's pack filler) would only have a window fetch bytes nobody asked for. Readers that
go blob by blob (``dump``, tree loads, salvage's tree walk) keep the windows.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator

from airflow_backup.storage.base import (
    Capabilities,
    FileType,
    Handle,
    Storage,
    load_as_one_chunk,
    load_by_copy,
    load_chunks,
)
from airflow_backup.storage.wrapper import DelegatingStorage

__all__ = ["ReadAheadStorage", "planned_reads"]

DEFAULT_WINDOW = 8 * 1024 * 1024
DEFAULT_WINDOWS = 4

# A context variable, not a flag on the store: the filler reaches ReadAheadStorage through
# other wrappers (the metadata cache) whose protocol has no room for a per-call hint, and
# other threads reading through the same store (tree loads) must keep their windows.
_PLANNED: contextvars.ContextVar[bool] = contextvars.ContextVar("planned_reads",
                                                                 default=False)


@contextlib.contextmanager
def planned_reads() -> Iterator[None]:
    """Within this block, in this thread (this context), loads pass every ReadAheadStorage
    straight through: each read is fetched as asked, never widened to a window nor served
    from one. For callers that plan their reads to cover exactly the bytes they need."""
    token = _PLANNED.set(True)
    try:
        yield
    finally:
        _PLANNED.reset(token)


class ReadAheadStorage(DelegatingStorage):
    """Wraps ``inner``; serves small data-pack reads from windows of ``window`` bytes.

    At most ``windows`` windows are kept (memory: ``window * windows`` bytes). Thread-safe.
    ``fetches`` and ``served`` count window loads and reads answered from memory. Reads into
    a buffer go through the windows too, so the capabilities are the wrapped store's
    without native ``load_into``.
    """

    def __init__(self, inner: Storage, *, window: int = DEFAULT_WINDOW,
                 windows: int = DEFAULT_WINDOWS) -> None:
        super().__init__(inner)
        self._window = window
        self._max = max(1, windows)
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.fetches = 0
        self.served = 0

    @property
    def capabilities(self) -> Capabilities:
        """Return the wrapped store's capabilities, reads into a buffer not native."""
        return dataclasses.replace(self.inner.capabilities, load_into=False)

    def _lookup(self, name: str, offset: int, length: int) -> bytes | None:
        with self._lock:
            for key, data in reversed(self._cache.items()):
                start = key[1]
                if key[0] == name and start <= offset and offset + length <= start + len(data):
                    self._cache.move_to_end(key)
                    self.served += 1
                    return data[offset - start: offset - start + length]
        return None

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load a range; small data-pack ranges are served from (or fill) a window, except
        inside :func:`planned_reads`."""
        if (handle.type is not FileType.DATA or length is None or length >= self._window
                or _PLANNED.get()):
            return self.inner.load(handle, offset, length)
        hit = self._lookup(handle.name, offset, length)
        if hit is not None:
            return hit
        data = self.inner.load(handle, offset, self._window)
        with self._lock:
            self.fetches += 1
            self._cache[(handle.name, offset)] = data
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return data[:length]

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        """Stream a range from the wrapped store when :meth:`load` would pass it straight
        through (decided now, in the caller's context, not at the first ``next``); else
        serve it as one chunk through the windows."""
        if (handle.type is not FileType.DATA or length >= self._window
                or _PLANNED.get()):
            return load_chunks(self.inner, handle, offset, length)
        return load_as_one_chunk(self, handle, offset, length)

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read a range into ``buf`` through :meth:`load` (and so through the windows)."""
        return load_by_copy(self, handle, offset, buf)

    def _forget(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]

    def remove(self, handle: Handle) -> None:
        """Remove through (and forget its windows)."""
        self._forget(handle.name)
        self.inner.remove(handle)
