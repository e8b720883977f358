"""A per-thread scratch buffer for decrypting blobs one after another.

Reading every blob of a repository (restore, check) would otherwise allocate a fresh
plaintext buffer per blob: up to 8 MiB of new pages each, faulted in while holding the GIL.
"""

from __future__ import annotations

import mmap
import threading

__all__ = ["scratch"]

_STEP = 1 << 20
_THREAD = threading.local()


def scratch(size: int) -> memoryview:
    """Return a view of at least ``size`` bytes of this thread's scratch buffer (an anonymous
    map, grown in 1 MiB steps and kept for the thread's life). Its content is overwritten by
    the thread's next use; never hand it to another thread."""
    buf: mmap.mmap | None = getattr(_THREAD, "buf", None)
    if buf is None or len(buf) < size:
        # Views of a smaller, older map may still be alive; it is freed once they are.
        buf = _THREAD.buf = mmap.mmap(-1, max(_STEP, -(-size // _STEP) * _STEP))
    return memoryview(buf)
