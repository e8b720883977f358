"""The blob index: which pack holds each blob, at what offset and length.

Index files are unpacked JSON: ``{"packs":[{"id":…,"blobs":[{"id","type","offset","length",
"uncompressed_length"?}]}]}``. Several index files may describe the same blob; any entry
is good. Every entry is validated as it is read: ids of 64 hex digits, a known blob type, an
offset and lengths that fit restic's uint32 fields (a sealed blob at least 32 bytes long);
a file that breaks a rule is an IntegrityError naming the file and the field, before any of
it is used.

In memory, :class:`Index` keeps fixed-size records sorted by id in three flat buffers (57 bytes
a blob: an 8-byte search key, the 32-byte id, and pack number, offset, lengths and type as
uint32s) plus a small dict of recent additions that is merged in by a vectorised sort. There
is no Python object per blob, which would cost far more memory than the record.

numpy is imported by the first merge, not with this module: a repository of fewer than
65,536 blobs never needs it, and with a cold page cache the import alone is a large part
of every command's start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_backup.errors import IntegrityError
from airflow_backup.jsontypes import JSONObject, JSONValue
from airflow_backup.repository.crypto import EXTENSION
from airflow_backup.repository.gojson import (
    U32_MAX,
    FieldError,
    as_id,
    as_int,
    as_list,
    as_object,
    describe,
)
from airflow_backup.repository.packs import BlobType, PackedBlob

__all__ = ["Index", "IndexEntry", "decode_index", "encode_index"]

_MERGE_AT = 1 << 16
_TYPES = (BlobType.DATA, BlobType.TREE)
_DATA = BlobType.DATA


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where a blob lives: its pack and its place in that pack."""

    pack_id: bytes
    blob: PackedBlob


class Index:
    """A thread-safe map from (blob type, blob id) to its pack location."""

    def __init__(self) -> None:
        # Sorted by the first 8 id bytes (big-endian, signed): the search key, contiguous.
        # Until the first merge they are empty tuples (see the module doc on numpy).
        self._keys: Any = ()  # numpy int64
        self._ids = b""  # 32 bytes per record, same order
        self._meta: Any = ()  # numpy uint32 rows: pack, offset, length, ulen, type
        self._recent: dict[tuple[int, bytes], tuple[int, int, int, int]] = {}
        self._pack_ids: list[bytes] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._sorted: tuple[Any, bytes, Any] = (self._keys, self._ids, self._meta)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    @property
    def nbytes(self) -> int:
        """Return the bytes held by the sorted record array (the bulk of the index)."""
        if not len(self._keys):
            return 0
        return int(self._keys.nbytes + len(self._ids) + self._meta.nbytes)

    def _pack_number(self, pack_id: bytes) -> int:
        num = self._pack_numbers.get(pack_id)
        if num is None:
            num = len(self._pack_ids)
            self._pack_ids.append(pack_id)
            self._pack_numbers[pack_id] = num
        return num

    def add_pack(self, pack_id: bytes, blobs: Iterable[PackedBlob]) -> None:
        """Record every blob of one pack."""
        with self._lock:
            num = self._pack_number(pack_id)
            for b in blobs:
                key = (0 if b.type is _DATA else 1, b.id)
                if key not in self._recent:
                    self._recent[key] = (num, b.offset, b.length, b.uncompressed_length)
            if len(self._recent) >= _MERGE_AT:
                self._merge()

    def add_index_file(self, obj: Any, what: str) -> list[str]:
        """Given an index file's parsed JSON, record every blob it lists, as
        :func:`decode_index` then :meth:`add_pack` would, and return the ids it supersedes.
        Raise IntegrityError naming ``what`` if it is malformed (then nothing is recorded).

        Loading the index is part of every command; this path makes no :class:`PackedBlob`
        per blob.
        """
        packs, supersedes = _parse_index(obj, what)
        found: dict[tuple[int, bytes], tuple[int, int, int, int]] = {}
        with self._lock:
            for pack_id, rows in packs:
                num = self._pack_number(pack_id)
                for code, blob_id, offset, length, ulen in rows:
                    found[(code, blob_id)] = (num, offset, length, ulen)
            found.update(self._recent)  # any entry of a blob is good; keep the earlier
            self._recent = found
            if len(found) >= _MERGE_AT:
                self._merge()
        return supersedes

    def _merge(self) -> None:
        if not self._recent:
            return
        import numpy as np  # the first merge imports it (see the module doc)

        items = list(self._recent.items())
        raw_ids = b"".join(k[1] for k, _ in items)
        new_ids = np.frombuffer(raw_ids, dtype=np.uint8).reshape(-1, 32)
        new_keys = new_ids[:, :8].copy().view(">i8").reshape(-1).astype(np.int64)
        new_meta = np.array([(*v, k[0]) for k, v in items], dtype=np.uint32).reshape(-1, 5)
        if len(self._keys):
            keys = np.concatenate([self._keys, new_keys])
            all_ids = np.concatenate([np.frombuffer(self._ids, dtype=np.uint8).reshape(-1, 32),
                                      new_ids])
            meta = np.concatenate([self._meta, new_meta])
        else:
            keys, all_ids, meta = new_keys, new_ids, new_meta
        order = np.argsort(keys, kind="stable")
        meta = meta[order]
        ids = all_ids[order].tobytes()
        # Publish the arrays before clearing ``_recent``: a reader that finds an empty
        # ``_recent`` must see the merged arrays. ``_snapshot`` reads all three together.
        self._sorted = (keys[order], ids, meta)
        self._keys, self._ids, self._meta = self._sorted
        self._recent = {}

    def finalize(self) -> None:
        """Fold recent additions into the compact array (done automatically as it grows)."""
        with self._lock:
            self._merge()

    def _find(self, type_code: int, blob_id: bytes) -> tuple[int, int, int, int] | None:
        found = self._recent.get((type_code, blob_id))
        if found is not None:
            return found
        keys, ids, meta = self._sorted
        n = len(keys)
        if not n:
            return None
        # A signed key always fits int64, which keeps numpy on its fast scalar path.
        key = int.from_bytes(blob_id[:8], "big", signed=True)
        lo = int(keys.searchsorted(key))
        # Records with equal keys are adjacent; the same id may be listed more than once
        # (several packs, or as both a data and a tree blob).
        while lo < n and int(keys[lo]) == key:
            if ids[lo * 32 : lo * 32 + 32] == blob_id:
                pack, offset, length, ulen, code = meta[lo].tolist()
                if code == type_code:
                    return pack, offset, length, ulen
            lo += 1
        return None

    def has(self, blob_type: BlobType, blob_id: bytes) -> bool:
        """Return whether the blob is stored in some pack."""
        return self._find(0 if blob_type is _DATA else 1, blob_id) is not None

    def lookup(self, blob_type: BlobType, blob_id: bytes) -> IndexEntry | None:
        """Return where the blob is stored, or None."""
        found = self._find(0 if blob_type is _DATA else 1, blob_id)
        if found is None:
            return None
        pack, offset, length, ulen = found
        return IndexEntry(self._pack_ids[pack], PackedBlob(blob_type, blob_id, offset, length,
                                                           ulen))

    def entries(self) -> Iterator[IndexEntry]:
        """Yield every known blob location (duplicates across packs included)."""
        with self._lock:
            self._merge()
            _, ids, meta = self._sorted
            pack_ids = list(self._pack_ids)
        for i, (pack, offset, length, ulen, code) in enumerate(meta.tolist() if len(meta)
                                                               else ()):
            yield IndexEntry(pack_ids[pack], PackedBlob(
                _TYPES[code], ids[i * 32 : i * 32 + 32], offset, length, ulen))

    def packs(self, blob_type: BlobType | None = None) -> set[bytes]:
        """Return the ids of every pack the index references, or with ``blob_type`` of the
        packs holding blobs of that type. Makes no object per blob and merges nothing, so a
        small index never loads numpy: the metadata cache asks which packs hold trees at
        the start of every remote command, and :meth:`entries` makes an object per blob."""
        code = None if blob_type is None else (0 if blob_type is _DATA else 1)
        with self._lock:
            numbers = {v[0] for k, v in self._recent.items() if code is None or k[0] == code}
            meta = self._sorted[2]
            pack_ids = list(self._pack_ids)
        if len(meta):
            import numpy as np  # already loaded: meta is a numpy array

            rows = meta if code is None else meta[meta[:, 4] == code]
            numbers.update(np.unique(rows[:, 0]).tolist())
        return {pack_ids[n] for n in numbers}


def encode_index(packs: dict[bytes, list[PackedBlob]]) -> JSONObject:
    """Return the JSON object of an index file describing ``packs``."""
    out: list[JSONValue] = []
    for pack_id, blobs in packs.items():
        jblobs: list[JSONValue] = []
        for b in blobs:
            entry: JSONObject = {
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


# A dict lookup instead of calling the Enum (Enum.__call__ is slow): one per blob.
_TYPE_CODES = {BlobType.DATA.value: 0, BlobType.TREE.value: 1}


def decode_index(obj: Any, what: str) -> tuple[dict[bytes, list[PackedBlob]], list[str]]:
    """Parse an index file's JSON; return (pack id → blobs, superseded index ids).

    Accepts the legacy form (a bare list of packs). Raise IntegrityError if malformed.
    """
    parsed, supersedes = _parse_index(obj, what)
    packs: dict[bytes, list[PackedBlob]] = {}
    for pack_id, rows in parsed:
        packs.setdefault(pack_id, []).extend(
            PackedBlob(_TYPES[code], blob_id, offset, length, ulen)
            for code, blob_id, offset, length, ulen in rows)
    return packs, supersedes


_Row = tuple[int, bytes, int, int, int]  # type code (0 data, 1 tree), id, offset, length, ulen

# A blob's offset and lengths are uint32 in restic's in-memory index and in pack headers; a
# sealed blob holds at least its IV and MAC.
_U32 = U32_MAX
_MIN_LENGTH = EXTENSION


def _parse_index(obj: Any, what: str) -> tuple[list[tuple[bytes, list[_Row]]], list[str]]:
    """Return an index file's packs, each with its blobs as plain tuples (no object per
    blob: every command loads the index), and the ids it supersedes. The legacy form is a
    bare list of packs. Raise IntegrityError naming ``what`` and the field if it is
    malformed (see :func:`_check_blob` for what a blob entry must be)."""
    try:
        return _parse_index_fields(obj)
    except FieldError as exc:
        raise IntegrityError(f"{what}: malformed index: {exc}") from exc


def _parse_index_fields(obj: Any) -> tuple[list[tuple[bytes, list[_Row]]], list[str]]:
    if type(obj) is list:
        packs_json, supersedes = obj, []
    else:
        doc = as_object(obj, "")
        packs_json = as_list(doc.get("packs"), "packs")
        supersedes = [as_id(s, f"supersedes[{i}]").hex()
                      for i, s in enumerate(as_list(doc.get("supersedes"), "supersedes"))]
    fromhex = bytes.fromhex
    codes = _TYPE_CODES
    packs = []
    for i, p in enumerate(packs_json):
        field = f"packs[{i}]"
        pack = as_object(p, field)
        pack_id = as_id(pack.get("id"), f"{field}.id")
        blobs = as_list(pack.get("blobs"), f"{field}.blobs")
        rows: list[_Row] = []
        append = rows.append
        # The loop every command runs over every blob: one combined test per entry, and
        # the field to blame is worked out only when it fails.
        for b in blobs:
            try:
                code = codes[b["type"]]
                blob_id = fromhex(b["id"])
                offset = b["offset"]
                length = b["length"]
                ulen = b.get("uncompressed_length")
                if ulen is None:
                    ulen = 0
                if not (type(offset) is int and type(length) is int and type(ulen) is int
                        and 0 <= offset <= _U32 and _MIN_LENGTH <= length <= _U32
                        and 0 <= ulen <= _U32 and len(blob_id) == 32
                        and len(b["id"]) == 64):
                    raise ValueError
            except (KeyError, TypeError, ValueError, AttributeError):
                raise _blob_fault(b, f"{field}.blobs[{len(rows)}]") from None
            append((code, blob_id, offset, length, ulen))
        packs.append((pack_id, rows))
    return packs, supersedes


def _blob_fault(value: Any, field: str) -> FieldError:
    """Return the FieldError that names what is wrong with one blob entry of an index file:
    it must be an object with ``id`` (64 hex digits), ``type`` (``data`` or ``tree``),
    ``offset`` (0..2^32-1), ``length`` (32..2^32-1: a sealed blob holds at least its IV and
    MAC) and optionally ``uncompressed_length`` (0..2^32-1; 0 or null: not compressed)."""
    try:
        b = as_object(value, field)
        kind = b.get("type")
        if type(kind) is not str or kind not in _TYPE_CODES:
            return FieldError(f"{field}.type", f'must be "data" or "tree", not {describe(kind)}')
        as_id(b.get("id"), f"{field}.id")
        for name, low in (("offset", 0), ("length", _MIN_LENGTH), ("uncompressed_length", 0)):
            if name != "uncompressed_length" and b.get(name) is None:
                return FieldError(f"{field}.{name}", "missing")
            as_int(b.get(name), f"{field}.{name}", low, _U32)
    except FieldError as exc:
        return exc
    return FieldError(field, "malformed blob entry")
