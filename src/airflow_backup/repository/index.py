"""The blob index: which pack holds each blob, at what offset and length.

Index files are unpacked JSON: ``{"packs":[{"id":…,"blobs":[{"id","type","offset","length",
"uncompressed_length"?}]}]}``. Several index files may describe the same blob; any entry
is good. Every entry is validated as it is read: ids of 64 hex digits, a known blob type, an
offset and lengths that fit restic's uint32 fields (a sealed blob at least 32 bytes long);
a file that breaks a rule is an IntegrityError naming the file and the field, before any of
it is used.

In memory, :class:`Index` keeps fixed-size records sorted by id in three flat arrays, 48 bytes
a blob: the first 8 id bytes as a signed int64 (the search key), the other 24 id bytes, and
four uint32s (pack number with the blob type in its top bit, offset, length, uncompressed
length). Beside them: a small dict of recent additions (:meth:`Index.add_pack`), merged in
every 65,536 blobs, and the index files read but not yet sorted in (:class:`ParsedIndex`,
columns of the same fields). Files are sorted in once, at the first question asked of the
index after they were added, so loading N blobs costs one sort, not one per 65,536 blobs.
There is no Python object per blob, which would cost far more memory than the record; a blob
listed more than once (the same type and id) is kept once, at the place read first. While
files are sorted in, memory peaks at about 80 bytes a blob (the arrays, the sort order and one
column being reordered), against 48 after.

numpy is imported by the first merge, not with this module: a repository of fewer than
65,536 blobs never needs it, and with a cold page cache the import alone is a large part
of every command's start.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, repeat
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

__all__ = ["Index", "IndexEntry", "ParsedIndex", "decode_index", "encode_index",
           "parse_index_file"]

_MERGE_AT = 1 << 16
_TYPES = (BlobType.DATA, BlobType.TREE)
_DATA = BlobType.DATA
_TYPE_SHIFT = 31  # the blob type is the top bit of a record's pack-number word
_PACK_MASK = (1 << _TYPE_SHIFT) - 1
_REST = 24  # id bytes after the 8-byte search key

_Place = tuple[int, int, int, int]  # pack number, offset, length, uncompressed length


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where a blob lives: its pack and its place in that pack."""

    pack_id: bytes
    blob: PackedBlob


@dataclass(frozen=True, slots=True)
class ParsedIndex:
    """One index file's blobs as columns, in the file's order (no Python object per blob).

    ``packs`` lists (pack id, number of blobs) in order; the blobs of the first pack come
    first in every column. ``ids``: 32 bytes a blob; ``codes``: a byte a blob (0 data,
    1 tree); ``offsets``, ``lengths``, ``ulens`` (0: not compressed): uint32 arrays.
    """

    packs: list[tuple[bytes, int]]
    ids: bytes
    codes: bytes
    offsets: array[int]
    lengths: array[int]
    ulens: array[int]
    supersedes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.codes)


class Index:
    """A thread-safe map from (blob type, blob id) to its pack location."""

    def __init__(self) -> None:
        # Sorted by the search key (the first 8 id bytes, big-endian, signed). Until the
        # first merge they are empty (see the module doc on numpy). Readers take the three
        # together from ``_sorted`` without the lock; a merge replaces the tuple.
        self._sorted: tuple[Any, memoryview, Any] = ((), memoryview(b""), ())
        self._recent: dict[tuple[int, bytes], _Place] = {}
        # Index files added and not sorted in yet, with their packs' numbers; readers test
        # ``_pending_blobs``, which drops to 0 only once the blobs are where readers look.
        self._pending: list[tuple[ParsedIndex, int]] = []  # a file, its first pack number
        self._pending_blobs = 0
        # Pack ids by number, 32 bytes each. A pack listed twice gets two numbers: cheaper
        # than a dict from id to number, and no bytes object per pack is kept, which would
        # pin the allocator's arenas full of the files' parsed JSON once that is freed.
        self._pack_table = bytearray()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        if self._pending_blobs:
            self._settle()
        return len(self._sorted[0]) + len(self._recent)

    @property
    def nbytes(self) -> int:
        """Return the bytes held by the sorted record arrays (the bulk of the index)."""
        keys, rests, meta = self._sorted
        if not len(keys):
            return 0
        return int(keys.nbytes + rests.nbytes + meta.nbytes)

    def _add_packs(self, pack_ids: Iterable[bytes]) -> int:
        """Number the packs (under the lock); return the first one's number."""
        first = len(self._pack_table) // 32
        self._pack_table += b"".join(pack_ids)
        return first

    def _pack_id(self, number: int) -> bytes:
        return bytes(self._pack_table[number * 32 : number * 32 + 32])

    def add_pack(self, pack_id: bytes, blobs: Iterable[PackedBlob]) -> None:
        """Record every blob of one pack."""
        with self._lock:
            if self._pending_blobs:
                self._settle()  # files added before this pack come first
            num = self._add_packs((pack_id,))
            for b in blobs:
                key = (0 if b.type is _DATA else 1, b.id)
                # A blob already indexed keeps its first place (and counts once).
                if key not in self._recent and self._find_sorted(*key) is None:
                    self._recent[key] = (num, b.offset, b.length, b.uncompressed_length)
            if len(self._recent) >= _MERGE_AT:
                self._merge()

    def add_index_file(self, obj: Any, what: str) -> list[str]:
        """Given an index file's parsed JSON, record every blob it lists, as
        :func:`decode_index` then :meth:`add_pack` would, and return the ids it supersedes.
        Raise IntegrityError naming ``what`` if it is malformed (then nothing is recorded)."""
        parsed = parse_index_file(obj, what)
        self.add_parsed(parsed)
        return parsed.supersedes

    def add_parsed(self, parsed: ParsedIndex) -> None:
        """Record every blob of an index file read by :func:`parse_index_file`. They are
        sorted in at the next question asked of the index, together with every other file
        added by then."""
        with self._lock:
            first = self._add_packs(pack_id for pack_id, _ in parsed.packs)
            if len(parsed):
                self._pending.append((parsed, first))
                self._pending_blobs += len(parsed)

    def _settle(self) -> None:
        """Put the index files added into the places lookups search: the dict while the
        index is small (no numpy), else the sorted arrays."""
        with self._lock:
            if not self._pending_blobs:
                return
            if (not len(self._sorted[0])
                    and self._pending_blobs + len(self._recent) < _MERGE_AT):
                self._pour()
            else:
                self._merge()

    def _pour(self) -> None:
        # Under the lock. The dict's entries were added before these files: they stay.
        recent = self._recent
        for parsed, first in self._pending:
            ids = parsed.ids
            pack_of = chain.from_iterable(
                repeat(num, count) for num, (_, count) in enumerate(parsed.packs, first))
            for i, (num, code, offset, length, ulen) in enumerate(zip(
                    pack_of, parsed.codes, parsed.offsets, parsed.lengths, parsed.ulens,
                    strict=True)):
                recent.setdefault((code, ids[i * 32 : i * 32 + 32]), (num, offset, length, ulen))
        self._pending = []
        self._pending_blobs = 0

    def _merge(self) -> None:
        """Sort the recent additions and the pending files into the arrays (under the lock):
        one stable sort of everything, then each (type, id) kept once, the first read."""
        import numpy as np  # the first merge imports it (see the module doc)

        old_keys, old_rests, old_meta = self._sorted
        n_old = len(old_keys)
        total = n_old + len(self._recent) + self._pending_blobs
        if total == n_old:
            return
        keys = np.empty(total, dtype=np.int64)
        rests = np.empty((total, _REST), dtype=np.uint8)
        meta = np.empty((total, 4), dtype=np.uint32)
        if n_old:
            keys[:n_old] = old_keys
            rests[:n_old] = np.frombuffer(old_rests, dtype=np.uint8).reshape(-1, _REST)
            meta[:n_old] = old_meta
        pos = n_old
        if self._recent:
            items = list(self._recent.items())
            ids = np.frombuffer(b"".join(k[1] for k, _ in items), dtype=np.uint8)
            rows = np.array([(v[0] | k[0] << _TYPE_SHIFT, v[1], v[2], v[3]) for k, v in items],
                            dtype=np.uint32).reshape(-1, 4)
            pos = _fill(keys, rests, meta, pos, ids, rows)
            del items, ids, rows
        # Files in the order read, after the dict: the stable sort keeps that order among
        # equal keys. ``_pending`` stays whole until the arrays are published, so a merge
        # that fails (MemoryError, a task's timeout) loses nothing and can be run again.
        for parsed, first in self._pending:
            counts = [count for _, count in parsed.packs]
            rows = np.empty((len(parsed), 4), dtype=np.uint32)
            rows[:, 0] = np.repeat(np.arange(first, first + len(counts), dtype=np.uint32),
                                   counts)
            rows[:, 0] |= np.frombuffer(parsed.codes, dtype=np.uint8).astype(np.uint32) \
                << _TYPE_SHIFT
            rows[:, 1] = np.asarray(parsed.offsets)
            rows[:, 2] = np.asarray(parsed.lengths)
            rows[:, 3] = np.asarray(parsed.ulens)
            pos = _fill(keys, rests, meta, pos, np.frombuffer(parsed.ids, dtype=np.uint8),
                        rows)
            del rows
        # Which records to keep is worked out on the sorted keys and the order, so each
        # column is gathered once: at most the arrays, the order and one gathered column
        # are alive at a time (~80 bytes a blob).
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        keep = _first_of_each(np, keys, order, rests, meta)
        if keep is not None:
            order, keys = order[keep], keys[keep]
        rests = rests[order]
        meta = meta[order]
        del order
        # Publish the arrays before emptying ``_recent`` and the pending files: a reader
        # that finds both empty must see the merged arrays.
        self._sorted = (keys, rests.reshape(-1).data, meta)
        self._recent = {}
        self._pending = []
        self._pending_blobs = 0

    def finalize(self) -> None:
        """Fold recent additions and added files into the compact arrays (done automatically
        as the index grows and when it is asked)."""
        with self._lock:
            self._merge()

    def _find(self, type_code: int, blob_id: bytes) -> _Place | None:
        if self._pending_blobs:
            self._settle()
        found = self._recent.get((type_code, blob_id))
        if found is not None:
            return found
        return self._find_sorted(type_code, blob_id)

    def _find_sorted(self, type_code: int, blob_id: bytes) -> _Place | None:
        keys, rests, meta = self._sorted
        n = len(keys)
        if not n:
            return None
        # A signed key always fits int64, which keeps numpy on its fast scalar path.
        key = int.from_bytes(blob_id[:8], "big", signed=True)
        rest = blob_id[8:]
        lo = int(keys.searchsorted(key))
        # Records with equal keys are adjacent: the same id as a data and as a tree blob,
        # or different ids sharing their first 8 bytes.
        while lo < n and int(keys[lo]) == key:
            if rests[lo * _REST : lo * _REST + _REST] == rest:
                word, offset, length, ulen = meta[lo].tolist()
                if word >> _TYPE_SHIFT == type_code:
                    return word & _PACK_MASK, offset, length, ulen
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
        return IndexEntry(self._pack_id(pack), PackedBlob(blob_type, blob_id, offset, length,
                                                           ulen))

    def entries(self) -> Iterator[IndexEntry]:
        """Yield every blob's location (one per type and id)."""
        with self._lock:
            self._merge()
            keys, rests, meta = self._sorted
        if not len(keys):
            return
        heads = keys.astype(">i8").tobytes()
        for i, (word, offset, length, ulen) in enumerate(meta.tolist()):
            blob_id = heads[i * 8 : i * 8 + 8] + rests[i * _REST : i * _REST + _REST].tobytes()
            yield IndexEntry(self._pack_id(word & _PACK_MASK), PackedBlob(
                _TYPES[word >> _TYPE_SHIFT], blob_id, offset, length, ulen))

    def packs(self, blob_type: BlobType | None = None) -> set[bytes]:
        """Return the ids of every pack the index references, or with ``blob_type`` of the
        packs holding blobs of that type. Makes no object per blob and merges no recent
        additions, so a small index never loads numpy: the metadata cache asks which packs
        hold trees at the start of every remote command, and :meth:`entries` makes an
        object per blob."""
        code = None if blob_type is None else (0 if blob_type is _DATA else 1)
        if self._pending_blobs:
            self._settle()
        with self._lock:
            numbers = {v[0] for k, v in self._recent.items() if code is None or k[0] == code}
            meta = self._sorted[2]
        if len(meta):
            import numpy as np  # already loaded: meta is a numpy array

            words = meta[:, 0]
            if code is not None:
                words = words[(words >> _TYPE_SHIFT) == code]
            numbers.update(np.unique(words & _PACK_MASK).tolist())
        return {self._pack_id(n) for n in numbers}


def _fill(keys: Any, rests: Any, meta: Any, pos: int, ids: Any, rows: Any) -> int:
    """Copy records (``ids``: 32 bytes each, flat uint8; ``rows``: their four uint32s) into
    the arrays from ``pos``; return the position after them."""
    n = len(rows)
    ids = ids.reshape(n, 32)
    keys[pos : pos + n] = ids[:, :8].copy().view(">i8").reshape(-1)
    rests[pos : pos + n] = ids[:, 8:]
    meta[pos : pos + n] = rows
    return pos + n


def _first_of_each(np: Any, keys: Any, order: Any, rests: Any, meta: Any) -> Any:
    """Given the sorted ``keys`` of records (``order``: their places in ``rests`` and
    ``meta``; equal keys in the order read), return a mask keeping the first record of each
    (type, id), or None if every record is the first."""
    same = keys[1:] == keys[:-1]
    if not same.any():
        return None
    keep = np.ones(len(keys), dtype=bool)
    # The usual repeat: the same blob in two files, now adjacent.
    at = np.flatnonzero(same) + 1
    here, before = order[at], order[at - 1]
    repeat_ = ((rests[here] == rests[before]).all(axis=1)
               & ((meta[here, 0] >> _TYPE_SHIFT) == (meta[before, 0] >> _TYPE_SHIFT)))
    keep[at[repeat_]] = False
    # What is left sharing a key: different ids with the same first 8 bytes, or a type in
    # between two repeats. Rare, and each run of equal keys is gone through once.
    left = at[~repeat_]
    done: set[int] = set()
    for i in sorted({*left.tolist(), *(left - 1).tolist()}):
        run_key = int(keys[i])
        if run_key in done:
            continue
        done.add(run_key)
        while i > 0 and keys[i - 1] == keys[i]:
            i -= 1  # from the start of the key's run
        marks: set[tuple[bytes, int]] = set()
        while i < len(keys) and int(keys[i]) == run_key:
            if keep[i]:
                j = int(order[i])
                ident = (rests[j].tobytes(), int(meta[j, 0]) >> _TYPE_SHIFT)
                if ident in marks:
                    keep[i] = False
                marks.add(ident)
            i += 1
    return None if keep.all() else keep


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


def parse_index_file(obj: Any, what: str) -> ParsedIndex:
    """Return an index file's blobs as columns, from its parsed JSON (the legacy form, a
    bare list of packs, too). Raise IntegrityError naming ``what`` and the field if it is
    malformed: exactly the files :func:`decode_index` rejects.

    Every command that opens a repository reads every index file: the fields are taken a
    column at a time and checked by C loops (types, lengths, ranges), with no Python object
    made per blob that outlives the call. Only a file that fails those checks is read again
    entry by entry, to name the fault.
    """
    try:
        return _parse_columns(obj)
    except (FieldError, KeyError, TypeError, ValueError, AttributeError, OverflowError):
        pass
    packs, supersedes = _parse_index(obj, what)  # raises, naming the field
    # The column checks refused what the entry-by-entry reader accepts: take its reading.
    return ParsedIndex(
        packs=[(pack_id, len(rows)) for pack_id, rows in packs],
        ids=b"".join(r[1] for _, rows in packs for r in rows),
        codes=bytes(r[0] for _, rows in packs for r in rows),
        offsets=array("I", [r[2] for _, rows in packs for r in rows]),
        lengths=array("I", [r[3] for _, rows in packs for r in rows]),
        ulens=array("I", [r[4] for _, rows in packs for r in rows]),
        supersedes=supersedes)


_INT = {int}
_INT_OR_NULL = {int, type(None)}


def _parse_columns(obj: Any) -> ParsedIndex:
    """The column-wise reading of :func:`parse_index_file`; raise (FieldError, KeyError,
    TypeError, ValueError, AttributeError or OverflowError) on anything it does not accept,
    never returning what the entry-by-entry reader would reject."""
    if type(obj) is list:
        packs_json: list[Any] = obj
        supersedes: list[str] = []
    else:
        doc = as_object(obj, "")
        packs_json = as_list(doc.get("packs"), "packs")
        supersedes = [as_id(s, "supersedes").hex()
                      for s in as_list(doc.get("supersedes"), "supersedes")]
    packs: list[tuple[bytes, int]] = []
    hexes: list[Any] = []
    types: list[Any] = []
    offsets: list[Any] = []
    lengths: list[Any] = []
    ulens: list[Any] = []
    for p in packs_json:
        pack = as_object(p, "packs")
        blobs = as_list(pack.get("blobs"), "blobs")
        packs.append((as_id(pack.get("id"), "id"), len(blobs)))
        hexes += [b["id"] for b in blobs]
        types += [b["type"] for b in blobs]
        offsets += [b["offset"] for b in blobs]
        lengths += [b["length"] for b in blobs]
        ulens += [b.get("uncompressed_length") for b in blobs]
    # bool is not int here (JSON true is no number), hence the exact type sets.
    if not (set(map(type, hexes)) <= {str} and set(map(len, hexes)) <= {64}
            and set(map(type, offsets)) <= _INT and set(map(type, lengths)) <= _INT
            and set(map(type, ulens)) <= _INT_OR_NULL):
        raise ValueError("a field of the wrong type")
    joined = "".join(hexes)
    if not joined.isascii():
        raise ValueError("an id that is not hex")
    ids = bytes.fromhex(joined)
    if len(ids) != 32 * len(hexes):  # fromhex skips spaces
        raise ValueError("an id that is not hex")
    length_array = array("I", lengths)  # uint32: OverflowError outside 0..2^32-1
    if length_array and min(length_array) < _MIN_LENGTH:
        raise ValueError("a blob shorter than its seal")
    return ParsedIndex(
        packs=packs, ids=ids, codes=bytes(map(_TYPE_CODES.__getitem__, types)),
        offsets=array("I", offsets), lengths=length_array,
        ulens=array("I", [0 if u is None else u for u in ulens]), supersedes=supersedes)


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
