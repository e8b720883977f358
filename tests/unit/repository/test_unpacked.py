"""Unpacked files (index, snapshot, lock): Go JSON, ``0x02 ‖ zstd`` in v2, sealed, stored
under the SHA-256 of the sealed bytes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError, NotFound
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.unpacked import (
    compress,
    decode_unpacked,
    decompress,
    decompress_sized,
    encode_unpacked,
    load_json,
    save_json,
)
from airflow_backup.storage import FileType, Handle, MemoryStorage

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_documents = st.dictionaries(st.text(max_size=8), json_values, max_size=5) | \
    st.lists(json_values, max_size=5)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)




@settings(max_examples=80, deadline=None)
@given(obj=json_documents, version=st.sampled_from([1, 2]))
def test_save_load_round_trip(obj: Any, version: int) -> None:
    storage, key = MemoryStorage(), Key.random()
    file_id = save_json(storage, key, FileType.SNAPSHOT, obj, version)
    sealed = storage.load(Handle(FileType.SNAPSHOT, file_id))
    assert file_id == hashlib.sha256(sealed).hexdigest()
    assert load_json(storage, key, Handle(FileType.SNAPSHOT, file_id)) == obj


def test_v2_plaintext_is_version_byte_and_zstd(key: Key) -> None:
    payload = b'{"packs":[]}'
    plain = key.open(encode_unpacked(key, payload, 2))
    assert plain[0] == 0x02
    assert plain[1:5] == ZSTD_MAGIC
    assert zstandard.ZstdDecompressor().decompress(plain[1:]) == payload


def test_v2_save_json_writes_a_compressed_file(key: Key, storage: MemoryStorage) -> None:
    file_id = save_json(storage, key, FileType.INDEX, {"packs": []}, 2)
    plain = key.open(storage.load(Handle(FileType.INDEX, file_id)))
    assert plain[0] == 0x02 and plain[1:5] == ZSTD_MAGIC


def test_v1_plaintext_is_plain_json(key: Key) -> None:
    assert key.open(encode_unpacked(key, b'{"a":1}', 1)) == b'{"a":1}'
    assert key.open(encode_unpacked(key, b'{"a":1}', 2, compress_it=False)) == b'{"a":1}'


@pytest.mark.parametrize("plain", [b'{"a":1}', b"[1,2]"])
def test_v2_reader_accepts_plain_json(key: Key, plain: bytes) -> None:
    assert decode_unpacked(key, key.seal(plain), "x") == plain


def test_zstd_frames_with_a_checksum_are_accepted(key: Key) -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(b'{"x":[]}')
    assert decode_unpacked(key, key.seal(b"\x02" + frame), "x") == b'{"x":[]}'


def test_our_frames_have_no_checksum() -> None:
    frame = compress(b"data" * 100)
    params = zstandard.get_frame_parameters(frame)
    assert not params.has_checksum
    assert decompress(frame, "x") == b"data" * 100


@pytest.mark.parametrize(("plain", "match"), [
    (b"", "empty"),
    (b"\x01{}", "unknown encoding version 1"),
    (b"\x03{}", "unknown encoding version 3"),
    (b" {}", "unknown encoding version 32"),
    (b"\x02not zstd", "invalid zstd"),
    (b"\x02" + ZSTD_MAGIC, "invalid zstd"),
])
def test_bad_plaintexts_are_rejected_with_the_file_name(key: Key, plain: bytes, match: str
                                                         ) -> None:
    with pytest.raises(IntegrityError, match=f"index/abcd: {match}"):
        decode_unpacked(key, key.seal(plain), "index/abcd")


def test_tampered_file_is_rejected_naming_it(key: Key, storage: MemoryStorage) -> None:
    file_id = save_json(storage, key, FileType.SNAPSHOT, {"time": "x"}, 2)
    handle = Handle(FileType.SNAPSHOT, file_id)
    sealed = storage.load(handle)
    storage.corrupt(handle, flip_bit(sealed, 8 * 20))
    with pytest.raises(IntegrityError, match=f"snapshots/{file_id}"):
        load_json(storage, key, handle)
    # With the id check off, the MAC still catches it (and names the file).
    with pytest.raises(IntegrityError, match=f"snapshots/{file_id}.*MAC"):
        load_json(storage, key, handle, verify_id=False)


def test_valid_file_under_the_wrong_name_is_rejected(key: Key, storage: MemoryStorage) -> None:
    a = save_json(storage, key, FileType.INDEX, {"packs": []}, 2)
    wrong = "0" * 64
    storage.save(Handle(FileType.INDEX, wrong), storage.load(Handle(FileType.INDEX, a)))
    with pytest.raises(IntegrityError, match=f"index/{wrong}: content does not match its id"):
        load_json(storage, key, Handle(FileType.INDEX, wrong))


def test_file_sealed_with_another_key_is_rejected(storage: MemoryStorage) -> None:
    file_id = save_json(storage, Key.random(), FileType.LOCK, {"pid": 1}, 2)
    with pytest.raises(IntegrityError, match=f"locks/{file_id}"):
        load_json(storage, Key.random(), Handle(FileType.LOCK, file_id))


def test_invalid_json_inside_a_valid_file_is_rejected(key: Key, storage: MemoryStorage) -> None:
    sealed = key.seal(b"{not json")
    file_id = hashlib.sha256(sealed).hexdigest()
    storage.save(Handle(FileType.INDEX, file_id), sealed)
    with pytest.raises(IntegrityError, match="invalid JSON"):
        load_json(storage, key, Handle(FileType.INDEX, file_id))


def test_missing_file_is_not_found(key: Key, storage: MemoryStorage) -> None:
    with pytest.raises(NotFound):
        load_json(storage, key, Handle(FileType.INDEX, "ab" * 32))


def test_json_is_go_encoded(key: Key, storage: MemoryStorage) -> None:
    file_id = save_json(storage, key, FileType.SNAPSHOT, {"b": "<&>", "a": [1]}, 1)
    plain = key.open(storage.load(Handle(FileType.SNAPSHOT, file_id)))
    assert plain == b'{"b":"\\u003c\\u0026\\u003e","a":[1]}'


@pytest.mark.parametrize("size", [0, 1, 5_000, 128 << 10, 3 << 20])
def test_decompress_sized_checks_the_size_on_both_paths(size: int) -> None:
    """Small frames are decompressed afresh, large ones into a reused buffer; either way the
    bytes are the frame's and a frame of any other size is refused."""
    plain = (b"some text, then more of it " * (size // 27 + 1))[:size]
    frame = zstandard.ZstdCompressor(level=3).compress(plain)
    assert bytes(decompress_sized(frame, size, "blob x")) == plain
    with pytest.raises(IntegrityError, match="blob x: wrong uncompressed length"):
        decompress_sized(frame, size + 1, "blob x")
    if size:
        with pytest.raises(IntegrityError, match="blob x: wrong uncompressed length"):
            decompress_sized(frame, size - 1, "blob x")


def test_decompress_sized_refuses_damaged_frames() -> None:
    plain = b"abc" * 100_000
    frame = bytearray(zstandard.ZstdCompressor(level=3).compress(plain))
    with pytest.raises(IntegrityError, match="blob y"):
        decompress_sized(bytes(frame[: len(frame) // 2]), len(plain), "blob y")
    with pytest.raises(IntegrityError, match="blob y: invalid zstd data"):
        decompress_sized(b"not a zstd frame at all" * 10_000, len(plain), "blob y")


def test_decompress_sized_refuses_a_second_frame() -> None:
    """restic writes each blob as one frame; a frame followed by another does not pass as
    the first one's bytes, whichever size is claimed."""
    plain = b"0123456789" * 20_000
    c = zstandard.ZstdCompressor(level=3)
    two = c.compress(plain) + c.compress(plain)
    for size in (len(plain), 2 * len(plain) - 1):
        with pytest.raises(IntegrityError, match="wrong uncompressed length"):
            decompress_sized(two, size, "blob z")
