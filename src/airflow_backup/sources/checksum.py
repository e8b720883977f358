"""The order-independent row checksum of table exports.

Shared by the export, which sums the rows it reads, and the SQL layer, which sums a restored
table to compare; both sides of the comparison must normalise values the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

__all__ = ["row_checksum", "row_digest"]


def _norm(value: object) -> str:
    if isinstance(value, datetime):
        return "t:" + (value.astimezone().isoformat() if value.tzinfo else value.isoformat())
    if isinstance(value, date):
        return "d:" + value.isoformat()
    if isinstance(value, Decimal):
        return "n:" + format(value.normalize(), "f")
    if isinstance(value, bytes | bytearray | memoryview):
        return "b:" + bytes(value).hex()
    if isinstance(value, bool):
        return "i:" + str(int(value))
    if isinstance(value, int | float):
        return ("i:" if isinstance(value, int) or value.is_integer() else "f:") + (
            str(int(value)) if isinstance(value, int) or value.is_integer() else repr(value))
    return "s:" + str(value) if value is not None else "null"


def row_digest(row: Sequence[object]) -> str:
    """Return a short hex digest of one row's values (the hash :func:`row_checksum` sums)."""
    return hashlib.sha256("\x1f".join(_norm(v) for v in row).encode()).hexdigest()[:16]


def row_checksum(rows: Iterable[Sequence[object]], start: int = 0) -> int:
    """Return ``start`` plus an order-independent checksum of ``rows`` (mod 2**64)."""
    total = start
    for row in rows:
        digest = hashlib.sha256("\x1f".join(_norm(v) for v in row).encode()).digest()
        total = (total + int.from_bytes(digest[:8], "big")) % (1 << 64)
    return total
