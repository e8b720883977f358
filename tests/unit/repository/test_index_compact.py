"""The in-memory index stays compact: no Python object per blob."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest

from airflow_backup.repository.index import Index
from airflow_backup.repository.packs import BlobType, PackedBlob


@pytest.mark.slow
def test_a_million_blobs_cost_at_most_64_bytes_each() -> None:
    n = 1_000_000
    idx = Index()
    pack_ids = []
    for p in range(n // 1000):
        pack_id = os.urandom(32)
        pack_ids.append(pack_id)
        idx.add_pack(pack_id, [
            PackedBlob(BlobType.DATA, hashlib.sha256(b"%d" % (p * 1000 + j)).digest(),
                       j * 100, 100, 0)
            for j in range(1000)
        ])
    idx.finalize()
    assert len(idx) == n
    pack_table = sys.getsizeof(idx._pack_table)
    per_blob = (idx.nbytes + pack_table) / n
    assert per_blob <= 64, per_blob
    for i in (0, 1, 499_999, n - 1):
        blob_id = hashlib.sha256(b"%d" % i).digest()
        entry = idx.lookup(BlobType.DATA, blob_id)
        assert entry is not None and entry.pack_id == pack_ids[i // 1000]
        assert entry.blob.offset == (i % 1000) * 100
        assert not idx.has(BlobType.TREE, blob_id)
    assert not idx.has(BlobType.DATA, os.urandom(32))


def test_duplicates_types_and_colliding_prefixes() -> None:
    idx = Index()
    same_prefix_a = b"\x01" * 8 + os.urandom(24)
    same_prefix_b = b"\x01" * 8 + os.urandom(24)
    high_bit = b"\xff" * 8 + os.urandom(24)  # beyond int64 as unsigned: must still sort
    idx.add_pack(b"P" * 32, [PackedBlob(BlobType.DATA, same_prefix_a, 0, 40),
                             PackedBlob(BlobType.TREE, same_prefix_b, 40, 50, 100),
                             PackedBlob(BlobType.DATA, high_bit, 90, 60)])
    idx.add_pack(b"Q" * 32, [PackedBlob(BlobType.DATA, same_prefix_b, 0, 70)])
    for merged in (False, True):
        if merged:
            idx.finalize()
        assert idx.lookup(BlobType.DATA, same_prefix_a).pack_id == b"P" * 32  # type: ignore[union-attr]
        tree = idx.lookup(BlobType.TREE, same_prefix_b)
        assert tree is not None and tree.blob.uncompressed_length == 100
        data_b = idx.lookup(BlobType.DATA, same_prefix_b)
        assert data_b is not None and data_b.pack_id == b"Q" * 32
        assert idx.has(BlobType.DATA, high_bit)
        assert not idx.has(BlobType.TREE, same_prefix_a)
    assert idx.packs() == {b"P" * 32, b"Q" * 32}
    assert len(list(idx.entries())) == 4


def test_a_small_index_answers_alike_before_and_after_its_first_merge() -> None:
    """Below the merge threshold the index lives in a dict (numpy is not even imported for
    it); every query must give the same answers before and after folding it into arrays."""
    idx = Index()
    assert len(idx) == 0 and idx.nbytes == 0
    assert idx.packs() == set() and list(idx.entries()) == []
    packs = {os.urandom(32): [PackedBlob(BlobType.DATA if j % 3 else BlobType.TREE,
                                         os.urandom(32), j * 10, 10, j) for j in range(5)]
             for _ in range(4)}
    for pack_id, blobs in packs.items():
        idx.add_pack(pack_id, blobs)

    def answers() -> tuple[object, ...]:
        # Lookups first: entries() and packs() fold the dict into the arrays themselves.
        found = {(b.type, b.id): idx.lookup(b.type, b.id) for bs in packs.values() for b in bs}
        missing = idx.has(BlobType.DATA, os.urandom(32))
        size = len(idx)
        entries = sorted((e.pack_id, e.blob.id, e.blob.type.value, e.blob.offset)
                         for e in idx.entries())
        by_type = (idx.packs(BlobType.DATA), idx.packs(BlobType.TREE))
        return size, idx.packs(), found, entries, missing, by_type

    assert idx._recent  # not merged yet
    assert idx.packs(BlobType.TREE) and idx._recent  # asking for packs merges nothing
    before = answers()
    assert not idx._recent
    assert answers() == before
    assert idx.nbytes > 0
    assert before[1] == set(packs)
    assert before[5] == tuple({p for p, bs in packs.items() if any(b.type is t for b in bs)}
                              for t in (BlobType.DATA, BlobType.TREE))
    assert all(e is not None for e in before[2].values())  # type: ignore[attr-defined]


def test_the_cli_starts_without_numpy() -> None:
    """numpy is loaded by the index's first merge only (0.16 s of a cold start)."""
    import subprocess

    code = "import sys, airflow_backup.cli.main; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_packs_by_type_cover_merged_and_recent_blobs() -> None:
    """Which packs hold trees is asked of an index that is partly merged arrays and partly
    recent additions (a backup adds packs after loading the index): both count."""
    idx = Index()
    data_pack, tree_pack, late_tree_pack, mixed = (bytes([i]) * 32 for i in range(1, 5))
    idx.add_pack(data_pack, [PackedBlob(BlobType.DATA, os.urandom(32), 0, 10)])
    idx.add_pack(tree_pack, [PackedBlob(BlobType.TREE, os.urandom(32), 0, 10)])
    idx.finalize()
    idx.add_pack(late_tree_pack, [PackedBlob(BlobType.TREE, os.urandom(32), 0, 10)])
    idx.add_pack(mixed, [PackedBlob(BlobType.DATA, os.urandom(32), 0, 10),
                         PackedBlob(BlobType.TREE, os.urandom(32), 10, 10)])
    assert idx._recent and len(idx._sorted[0]) == 2
    assert idx.packs(BlobType.TREE) == {tree_pack, late_tree_pack, mixed}
    assert idx.packs(BlobType.DATA) == {data_pack, mixed}
    assert idx.packs() == {data_pack, tree_pack, late_tree_pack, mixed}
