"""Per-thread scratch buffers for reading many blobs one after another.

Reading every blob of a repository (restore, check) would otherwise allocate fresh buffers
per read and per blob, up to 8 MiB each: every page of a new buffer is faulted in again,
while holding the GIL, and a restore reads a great many blobs.
"""

from __future__ import annotations

import mmap
import threading

__all__ = ["PLAIN", "READ", "UNPACKED", "scratch"]

PLAIN = 0  # a decrypted blob
UNPACKED = 1  # a decompressed blob
READ = 2  # bytes read from a pack

_STEP = 1 << 20
_THREAD = threading.local()


def scratch(size: int, slot: int = PLAIN) -> memoryview:
    """Return a view of at least ``size`` bytes of this thread's scratch buffer ``slot`` (an
    anonymous map, grown in 1 MiB steps and kept for the thread's life). Its content is
    overwritten by the thread's next use of the slot; never hand it to another thread."""
    bufs: list[mmap.mmap | None] | None = getattr(_THREAD, "bufs", None)
    if bufs is None:
        bufs = _THREAD.bufs = [None, None, None]
    buf = bufs[slot]
    if buf is None or len(buf) < size:
        # Views of a smaller, older map may still be alive; it is freed once they are.
        buf = bufs[slot] = mmap.mmap(-1, max(_STEP, -(-size // _STEP) * _STEP))
    return memoryview(buf)
