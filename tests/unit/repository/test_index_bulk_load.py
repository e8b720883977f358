"""Loading index files in bulk: each file is read column by column, every file is sorted in
once, and the result answers exactly as reading the files entry by entry would."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError
from airflow_backup.repository import index as index_module
from airflow_backup.repository.index import Index, decode_index, encode_index, parse_index_file
from airflow_backup.repository.packs import BlobType, PackedBlob

HEX = "0123456789abcdef"

# Field values an index file may hold, valid or not: what the column reader must accept
# exactly when the entry-by-entry reader does.
numbers = st.one_of(st.integers(-3, 2**32 + 3), st.sampled_from([0, 31, 32, 2**32 - 1]),
                    st.booleans(), st.floats(0, 100), st.none(), st.text(max_size=3))
hex_ids = st.one_of(
    st.text(HEX, min_size=64, max_size=64),
    st.text(HEX + "ABCDEF", min_size=64, max_size=64),
    st.text(HEX + " g\u00e9", min_size=62, max_size=66),
    st.integers(), st.none())
blob_entries = st.fixed_dictionaries(
    {"id": hex_ids, "type": st.sampled_from(["data", "tree", "other", None, 1]),
     "offset": numbers, "length": numbers},
    optional={"uncompressed_length": numbers})
index_docs = st.fixed_dictionaries({"packs": st.lists(st.fixed_dictionaries(
    {"id": st.text(HEX, min_size=64, max_size=64), "blobs": st.lists(blob_entries,
                                                                     max_size=4)}),
    max_size=3)})


def entry_by_entry(obj: Any) -> list[tuple[bytes, int, bytes, int, int, int]] | None:
    """What decode_index reads (pack id, type code, id, offset, length, ulen), or None if
    it rejects the file."""
    try:
        packs, _ = decode_index(obj, "index/x")
    except IntegrityError:
        return None
    return [(pack_id, 0 if b.type is BlobType.DATA else 1, b.id, b.offset, b.length,
             b.uncompressed_length) for pack_id, bs in packs.items() for b in bs]


def by_columns(obj: Any) -> list[tuple[bytes, int, bytes, int, int, int]] | None:
    try:
        parsed = parse_index_file(obj, "index/x")
    except IntegrityError:
        return None
    pack_of = [pack_id for pack_id, count in parsed.packs for _ in range(count)]
    return [(pack_of[i], parsed.codes[i], parsed.ids[i * 32 : i * 32 + 32], parsed.offsets[i],
             parsed.lengths[i], parsed.ulens[i]) for i in range(len(parsed))]


@settings(max_examples=400, deadline=None)
@given(doc=index_docs)
def test_the_column_reader_accepts_and_reads_exactly_what_the_entry_reader_does(
        doc: dict[str, Any]) -> None:
    obj = json.loads(json.dumps(doc))
    # decode_index groups blobs by pack id: compare in that grouping.
    want = entry_by_entry(obj)
    got = by_columns(obj)
    if want is None or got is None:
        assert want is got is None
    else:
        assert sorted(got) == sorted(want) and len(got) == len(want)


def test_a_malformed_file_is_named_with_its_field() -> None:
    bad = {"packs": [{"id": "11" * 32, "blobs": [
        {"id": "22" * 32, "type": "data", "offset": 0, "length": 40},
        {"id": "33" * 32, "type": "data", "offset": True, "length": 40}]}]}
    with pytest.raises(IntegrityError,
                       match=r"index/x: malformed index: packs\[0\]\.blobs\[1\]\.offset"):
        parse_index_file(bad, "index/x")


def file_of(blobs: list[tuple[bytes, PackedBlob]]) -> Any:
    packs: dict[bytes, list[PackedBlob]] = {}
    for pack_id, blob in blobs:
        packs.setdefault(pack_id, []).append(blob)
    return json.loads(json.dumps(encode_index(packs)))


def test_files_are_sorted_in_once_and_the_first_place_read_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten files of 20 blobs with a merge threshold of 16: the old index re-sorted everything
    every 16 blobs; now one sort, at the first question. A blob listed in two files keeps the
    place of the file read first, and counts once."""
    monkeypatch.setattr(index_module, "_MERGE_AT", 16)
    merges = 0
    real_merge = Index._merge

    def counting_merge(self: Index) -> None:
        nonlocal merges
        merges += 1
        real_merge(self)

    monkeypatch.setattr(Index, "_merge", counting_merge)
    idx = Index()
    shared = os.urandom(32)
    expected: dict[tuple[BlobType, bytes], tuple[bytes, int]] = {}
    for f in range(10):
        pack_id = bytes([f]) * 32
        blobs = [PackedBlob(BlobType.TREE if j % 4 == 0 else BlobType.DATA, os.urandom(32),
                            j * 100, 100, j) for j in range(19)]
        blobs.append(PackedBlob(BlobType.DATA, shared, 5000 + f, 64))
        for b in blobs:
            expected.setdefault((b.type, b.id), (pack_id, b.offset))
        idx.add_index_file(file_of([(pack_id, b) for b in blobs]), f"index/{f}")
    assert merges == 0
    assert len(idx) == 10 * 19 + 1 == len(expected)
    assert merges == 1
    for (blob_type, blob_id), (pack_id, offset) in expected.items():
        entry = idx.lookup(blob_type, blob_id)
        assert entry is not None and (entry.pack_id, entry.blob.offset) == (pack_id, offset)
    assert idx.lookup(BlobType.DATA, shared).pack_id == bytes([0]) * 32  # type: ignore[union-attr]
    assert not idx.has(BlobType.TREE, shared)
    assert merges == 1
    assert sorted((e.blob.type.value, e.blob.id) for e in idx.entries()) == sorted(
        (t.value, i) for t, i in expected)


def test_repeats_and_prefix_collisions_across_files_and_added_packs() -> None:
    """Ids sharing their first 8 bytes, one id as data and as tree, the same blob in three
    files with others in between: every question answered alike before and after the merge,
    and each (type, id) once."""
    prefix = os.urandom(8)
    a, b, c = (prefix + os.urandom(24) for _ in range(3))
    p1, p2, p3, p4 = (bytes([i]) * 32 for i in range(1, 5))
    idx = Index()
    idx.add_index_file(file_of([(p1, PackedBlob(BlobType.DATA, a, 0, 40)),
                                (p1, PackedBlob(BlobType.TREE, a, 40, 40))]), "index/1")
    idx.add_index_file(file_of([(p2, PackedBlob(BlobType.DATA, b, 0, 40)),
                                (p2, PackedBlob(BlobType.DATA, a, 40, 50))]), "index/2")
    idx.add_index_file(file_of([(p3, PackedBlob(BlobType.DATA, c, 0, 40)),
                                (p3, PackedBlob(BlobType.TREE, a, 40, 60)),
                                (p3, PackedBlob(BlobType.DATA, b, 80, 70))]), "index/3")
    idx.finalize()
    assert len(idx) == 4
    assert idx.lookup(BlobType.DATA, a).blob.length == 40  # type: ignore[union-attr]
    assert idx.lookup(BlobType.TREE, a).pack_id == p1  # type: ignore[union-attr]
    assert idx.lookup(BlobType.DATA, b).pack_id == p2  # type: ignore[union-attr]
    assert idx.lookup(BlobType.DATA, c).pack_id == p3  # type: ignore[union-attr]
    assert not idx.has(BlobType.TREE, b)
    assert not idx.has(BlobType.DATA, prefix + os.urandom(24))
    assert len(list(idx.entries())) == 4
    # A pack added after the files: found at once, and after its merge.
    d = prefix + os.urandom(24)
    idx.add_pack(p4, [PackedBlob(BlobType.DATA, d, 0, 40), PackedBlob(BlobType.DATA, c, 40, 40)])
    for merged in (False, True):
        if merged:
            idx.finalize()
        assert idx.lookup(BlobType.DATA, d).pack_id == p4  # type: ignore[union-attr]
        assert idx.has(BlobType.DATA, c)
        assert len(idx) == 5
    assert idx.lookup(BlobType.DATA, c).pack_id == p3  # type: ignore[union-attr]
    assert idx.packs(BlobType.TREE) == {p1}
    assert idx.packs() == {p1, p2, p3, p4}


def test_a_small_load_never_imports_numpy() -> None:
    """Below the merge threshold, files go into the dict: the CLI's start stays free of
    numpy for small repositories."""
    import subprocess
    import sys

    code = """
import json, os, sys
from airflow_backup.repository.index import Index, encode_index
from airflow_backup.repository.packs import BlobType, PackedBlob
idx = Index()
blobs = [PackedBlob(BlobType.DATA, os.urandom(32), i * 40, 40) for i in range(1000)]
idx.add_index_file(json.loads(json.dumps(encode_index({os.urandom(32): blobs}))), "index/x")
assert len(idx) == 1000 and all(idx.has(BlobType.DATA, b.id) for b in blobs)
assert len(idx.packs(BlobType.DATA)) == 1
print('numpy' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_a_million_blobs_from_index_files_take_48_bytes_each() -> None:
    """The records of a bulk load: 8 + 24 + 16 bytes a blob."""
    idx = Index()
    ids = os.urandom(32 * 1_000_000)
    for f in range(20):
        blobs = [PackedBlob(BlobType.DATA, ids[i * 32 : i * 32 + 32], i, 40)
                 for i in range(f * 50_000, (f + 1) * 50_000)]
        packs = {os.urandom(32): blobs[k : k + 500] for k in range(0, 50_000, 500)}
        idx.add_index_file(json.loads(json.dumps(encode_index(packs))), f"index/{f}")
    assert len(idx) == 1_000_000
    assert idx.nbytes == 48 * 1_000_000
    for i in (0, 1, 500_000, 999_999):
        entry = idx.lookup(BlobType.DATA, ids[i * 32 : i * 32 + 32])
        assert entry is not None and entry.blob.offset == i


def test_a_merge_that_fails_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge interrupted half-way (MemoryError, a task's timeout) leaves the files added
    pending: the next question merges them again, and every blob is where it was."""
    import numpy as np

    monkeypatch.setattr(index_module, "_MERGE_AT", 16)
    blobs = [PackedBlob(BlobType.DATA, os.urandom(32), i * 40, 40) for i in range(60)]
    idx = Index()
    for f in range(3):
        idx.add_index_file(file_of([(bytes([f]) * 32, b) for b in blobs[f * 20 : f * 20 + 20]]),
                           f"index/{f}")
    real_argsort = np.argsort

    def failing_argsort(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(np, "argsort", failing_argsort)
    with pytest.raises(MemoryError):
        idx.has(BlobType.DATA, blobs[0].id)
    monkeypatch.setattr(np, "argsort", real_argsort)
    assert len(idx) == 60
    for i, b in enumerate(blobs):
        entry = idx.lookup(BlobType.DATA, b.id)
        assert entry is not None and entry.pack_id == bytes([i // 20]) * 32
        assert entry.blob.offset == b.offset


def test_thousands_of_ids_sharing_their_first_8_bytes() -> None:
    """Each (type, id) of a long run of equal search keys is kept once, the first read."""
    prefix = b"\x80" + os.urandom(7)  # the sign bit set: the key is negative
    ids = [prefix + os.urandom(24) for _ in range(3000)]
    first = file_of([(b"\x01" * 32, PackedBlob(BlobType.DATA, i, n * 40, 40))
                     for n, i in enumerate(ids)])
    again = file_of([(b"\x02" * 32, PackedBlob(t, i, 0, 40)) for i in ids[::-1]
                     for t in (BlobType.TREE, BlobType.DATA)])
    idx = Index()
    idx.add_index_file(first, "index/1")
    idx.add_index_file(again, "index/2")
    idx.finalize()
    assert len(idx) == 6000
    for n, i in enumerate(ids):
        data = idx.lookup(BlobType.DATA, i)
        assert data is not None and data.pack_id == b"\x01" * 32 and data.blob.offset == n * 40
        assert idx.lookup(BlobType.TREE, i).pack_id == b"\x02" * 32  # type: ignore[union-attr]
