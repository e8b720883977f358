"""Several threads adding blobs to one pack writer at once (the content workers of a backup),
for the pack writer's tests."""

from __future__ import annotations

import hashlib
import threading
from typing import Protocol

__all__ = ["add_from_threads", "incompressible_blob"]


class _Adds(Protocol):
    def add(self, blob_id: bytes, data: bytes) -> object: ...


def incompressible_blob(i: int) -> bytes:
    """Return blob ``i``: 28.8 KB that zstd cannot shrink."""
    return hashlib.sha256(i.to_bytes(4, "big")).digest() * 900


def add_from_threads(writer: _Adds, count: int = 240, threads: int = 4
                     ) -> list[BaseException]:
    """Add blobs 0 to ``count`` - 1 from ``threads`` threads; return what they raised. Fails
    the test if a thread is still waiting (for a pack buffer) after 30 s."""
    errors: list[BaseException] = []

    def work(part: int) -> None:
        try:
            for i in range(part, count, threads):
                d = incompressible_blob(i)
                writer.add(hashlib.sha256(d).digest(), d)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(p,)) for p in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
        assert not t.is_alive(), "a thread waiting for a pack buffer never woke up"
    return errors
