"""Content-defined chunking with FastCDC: min 512 KiB, average 1 MiB, max 8 MiB.

The gear table is seeded from the repository's chunker polynomial, so chunk boundaries (and
therefore chunk sizes an observer could see) differ between repositories, as with restic's
per-repository Rabin polynomial.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyfastcdc import FastCDC

__all__ = ["AVG_SIZE", "MAX_SIZE", "MIN_SIZE", "Chunker"]

MIN_SIZE = 512 * 1024
AVG_SIZE = 1024 * 1024
MAX_SIZE = 8 * 1024 * 1024


class Chunker:
    """Splits streams into content-defined chunks."""

    def __init__(self, polynomial: int) -> None:
        self._seed = polynomial & 0xFFFFFFFF
        self._cdc: FastCDC | None = None

    def cut(self, buf: bytes | memoryview) -> Iterator[tuple[int, int]]:
        """Yield ``(offset, length)`` of each chunk of ``buf``; the last chunk ends at the
        buffer's end whether or not the content would cut there."""
        cdc = self._cdc
        if cdc is None:
            # Loaded when the first large file is cut, not at start-up: pyfastcdc and the
            # typing_extensions it loads would slow every command's start, and an unchanged
            # re-backup or a restore never cuts anything.
            from pyfastcdc import FastCDC

            cdc = self._cdc = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE,
                                      seed=self._seed)
        for chunk in cdc.cut_buf(buf):
            yield chunk.offset, chunk.length
