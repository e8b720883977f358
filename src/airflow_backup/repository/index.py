"""The blob index: which pack holds each blob, at what offset and length.

Index files are unpacked JSON: ``{"packs":[{"id":…,"blobs":[{"id","type","offset","length",
"uncompressed_length"?}]}]}``. Several index files may describe the same blob; any entry
is good. The in-memory :class:`Index` is a narrow interface so that a compact implementation
can replace the dict without touching its callers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.packs import BlobType, PackedBlob

__all__ = ["Index", "IndexEntry", "decode_index", "encode_index"]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where a blob lives: its pack and its place in that pack."""

    pack_id: bytes
    blob: PackedBlob


class Index:
    """An in-memory, thread-safe map from (blob type, blob id) to its pack location."""

    def __init__(self) -> None:
        self._entries: dict[tuple[BlobType, bytes], tuple[bytes, PackedBlob]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add_pack(self, pack_id: bytes, blobs: Iterable[PackedBlob]) -> None:
        """Record every blob of one pack."""
        with self._lock:
            for b in blobs:
                self._entries.setdefault((b.type, b.id), (pack_id, b))

    def has(self, blob_type: BlobType, blob_id: bytes) -> bool:
        """Return whether the blob is stored in some pack."""
        return (blob_type, blob_id) in self._entries

    def lookup(self, blob_type: BlobType, blob_id: bytes) -> IndexEntry | None:
        """Return where the blob is stored, or None."""
        found = self._entries.get((blob_type, blob_id))
        return IndexEntry(found[0], found[1]) if found else None

    def entries(self) -> Iterator[IndexEntry]:
        """Yield every known blob location."""
        with self._lock:
            items = list(self._entries.values())
        for pack_id, blob in items:
            yield IndexEntry(pack_id, blob)

    def packs(self) -> set[bytes]:
        """Return the ids of every pack the index references."""
        with self._lock:
            return {pack_id for pack_id, _ in self._entries.values()}


def encode_index(packs: dict[bytes, list[PackedBlob]]) -> dict[str, Any]:
    """Return the JSON object of an index file describing ``packs``."""
    out = []
    for pack_id, blobs in packs.items():
        jblobs: list[dict[str, Any]] = []
        for b in blobs:
            entry: dict[str, Any] = {
                "id": b.id.hex(),
                "type": b.type.value,
                "offset": b.offset,
                "length": b.length,
            }
            if b.uncompressed_length:
                entry["uncompressed_length"] = b.uncompressed_length
            jblobs.append(entry)
        out.append({"id": pack_id.hex(), "blobs": jblobs})
    return {"packs": out}


def decode_index(obj: Any, what: str) -> tuple[dict[bytes, list[PackedBlob]], list[str]]:
    """Parse an index file's JSON; return (pack id → blobs, superseded index ids).

    Accepts the legacy form (a bare list of packs). Raise IntegrityError if malformed.
    """
    try:
        if isinstance(obj, list):
            packs_json, supersedes = obj, list[str]()
        else:
            packs_json, supersedes = obj.get("packs") or [], obj.get("supersedes") or []
        packs: dict[bytes, list[PackedBlob]] = {}
        for p in packs_json:
            pack_id = bytes.fromhex(p["id"])
            blobs = packs.setdefault(pack_id, [])
            for b in p.get("blobs") or []:
                blobs.append(
                    PackedBlob(
                        BlobType(b["type"]),
                        bytes.fromhex(b["id"]),
                        int(b["offset"]),
                        int(b["length"]),
                        int(b.get("uncompressed_length") or 0),
                    )
                )
        return packs, [str(s) for s in supersedes]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{what}: malformed index") from exc
