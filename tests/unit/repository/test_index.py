"""Index files: restic's JSON shape, the legacy list form, the in-memory index."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.index import Index, decode_index, encode_index
from airflow_backup.repository.packs import BlobType, PackedBlob
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.unpacked import load_json, save_json
from airflow_backup.storage import FileType, Handle, MemoryStorage

ids = st.binary(min_size=32, max_size=32)
blobs = st.builds(PackedBlob, st.sampled_from(list(BlobType)), ids, st.integers(0, 2**32 - 1),
                  st.integers(32, 2**32 - 1), st.one_of(st.just(0), st.integers(1, 2**32 - 1)))
index_contents = st.dictionaries(ids, st.lists(blobs, max_size=5), max_size=5)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(packs=index_contents)
def test_index_round_trip_through_storage(packs: dict[bytes, list[PackedBlob]]) -> None:
    storage, key = MemoryStorage(), Key.random()
    file_id = save_json(storage, key, FileType.INDEX, encode_index(packs), 2)
    obj = load_json(storage, key, Handle(FileType.INDEX, file_id))
    assert decode_index(obj, "index") == (packs, [])


@settings(max_examples=60, deadline=None)
@given(packs=index_contents, earlier=index_contents)
def test_index_file_loads_into_the_index_as_decoded_packs_would(
        packs: dict[bytes, list[PackedBlob]], earlier: dict[bytes, list[PackedBlob]]) -> None:
    """The fast path of loading an index file records what decode_index + add_pack would:
    every blob, at one of the places the files give for it."""
    fast, slow = Index(), Index()
    for idx in (fast, slow):
        for pack_id, pack_blobs in earlier.items():
            idx.add_pack(pack_id, pack_blobs)
    obj = json.loads(json.dumps(encode_index(packs)))
    assert fast.add_index_file(obj, "index/x") == []
    for pack_id, pack_blobs in decode_index(obj, "index/x")[0].items():
        slow.add_pack(pack_id, pack_blobs)
    places: dict[tuple[BlobType, bytes], set[tuple[bytes, PackedBlob]]] = {}
    for contents in (earlier, packs):
        for pack_id, pack_blobs in contents.items():
            for b in pack_blobs:
                places.setdefault((b.type, b.id), set()).add((pack_id, b))
    assert len(fast) == len(slow) == len(places)
    for (blob_type, blob_id), where in places.items():
        entry = fast.lookup(blob_type, blob_id)
        assert entry is not None and (entry.pack_id, entry.blob) in where


def test_index_json_shape() -> None:
    pack, a, b = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    obj = encode_index({pack: [PackedBlob(BlobType.DATA, a, 0, 38),
                               PackedBlob(BlobType.TREE, b, 38, 100, 511)]})
    assert obj == {"packs": [{"id": pack.hex(), "blobs": [
        {"id": a.hex(), "type": "data", "offset": 0, "length": 38},
        {"id": b.hex(), "type": "tree", "offset": 38, "length": 100,
         "uncompressed_length": 511},
    ]}]}
    assert list(obj["packs"][0]["blobs"][1]) == ["id", "type", "offset", "length",
                                                 "uncompressed_length"]


def test_legacy_list_form_and_supersedes_parse() -> None:
    pack, a = "11" * 32, "22" * 32
    legacy = json.loads(
        f'[{{"id":"{pack}","blobs":[{{"id":"{a}","type":"data","offset":5,"length":40}}]}}]')
    packs, supersedes = decode_index(legacy, "index")
    assert packs == {bytes.fromhex(pack): [PackedBlob(BlobType.DATA, bytes.fromhex(a), 5, 40)]}
    assert supersedes == []
    packs, supersedes = decode_index({"supersedes": ["ab" * 32], "packs": legacy}, "index")
    assert supersedes == ["ab" * 32] and len(packs) == 1


def test_restic_written_index_with_nulls_parses() -> None:
    assert decode_index({"packs": None}, "i") == ({}, [])
    pack = "11" * 32
    assert decode_index({"packs": [{"id": pack, "blobs": None}]}, "i") == \
        ({bytes.fromhex(pack): []}, [])


@pytest.mark.parametrize("obj", [
    {"packs": [{"blobs": []}]},
    {"packs": [{"id": "zz", "blobs": []}]},
    {"packs": [{"id": "11" * 32, "blobs": [{"id": "22" * 32, "type": "other", "offset": 0,
                                            "length": 40}]}]},
    {"packs": [{"id": "11" * 32, "blobs": [{"id": "22" * 32, "type": "data"}]}]},
    {"packs": "nope"},
    "string",
    [1],
])
def test_malformed_index_is_rejected_with_its_name(obj: object) -> None:
    with pytest.raises(IntegrityError, match="index/9f8e: malformed"):
        decode_index(obj, "index/9f8e")
    idx = Index()
    with pytest.raises(IntegrityError, match="index/9f8e: malformed"):
        idx.add_index_file(obj, "index/9f8e")
    assert len(idx) == 0


def test_in_memory_index_keeps_the_first_location() -> None:
    idx = Index()
    blob = b"\x07" * 32
    first = PackedBlob(BlobType.DATA, blob, 0, 40)
    idx.add_pack(b"\x01" * 32, [first])
    idx.add_pack(b"\x02" * 32, [PackedBlob(BlobType.DATA, blob, 80, 40)])
    assert len(idx) == 1
    entry = idx.lookup(BlobType.DATA, blob)
    assert entry is not None and entry.pack_id == b"\x01" * 32 and entry.blob == first
    # Types are separate namespaces.
    assert idx.has(BlobType.DATA, blob) and not idx.has(BlobType.TREE, blob)
    assert idx.lookup(BlobType.TREE, blob) is None
    assert idx.packs() == {b"\x01" * 32}
    assert [e.blob for e in idx.entries()] == [first]


def test_repository_loads_every_index_file(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    a = repo.save_blob(BlobType.DATA, b"alpha")[0]
    repo.flush()
    b = repo.save_blob(BlobType.DATA, b"beta")[0]
    repo.flush()
    assert len(list(storage.list(FileType.INDEX))) == 2
    other = Repository.open(storage, "pw")
    other.load_index()
    assert other.load_blob(BlobType.DATA, a) == b"alpha"
    assert other.load_blob(BlobType.DATA, b) == b"beta"


def test_tampered_index_file_is_reported_by_name(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    repo.save_blob(BlobType.DATA, b"alpha")
    repo.flush()
    [info] = storage.list(FileType.INDEX)
    handle = Handle(FileType.INDEX, info.name)
    storage.corrupt(handle, flip_bit(storage.load(handle), 100))
    other = Repository.open(storage, "pw")
    with pytest.raises(IntegrityError, match=f"index/{info.name}"):
        other.load_index()


def test_index_file_is_compressed_and_named_by_hash(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    repo.save_blob(BlobType.DATA, b"alpha")
    repo.flush()
    [info] = storage.list(FileType.INDEX)
    sealed = storage.load(Handle(FileType.INDEX, info.name))
    assert hashlib.sha256(sealed).hexdigest() == info.name
    assert repo.key.open(sealed)[0] == 0x02
