"""Pack headers (``packs``) and packs written by ``PackWriter``.

Entry layouts are checked against ``struct`` encodings written from the design document
(types 0/1: 37 bytes, types 2/3: 41 bytes), not against the engine's own encoder.
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
import zstandard
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError, PermanentStorageError
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.packer import PackWriter
from airflow_backup.repository.packs import (
    BlobType,
    PackedBlob,
    decode_header,
    encode_header,
    read_pack_header,
)
from airflow_backup.storage import FileType, Handle, MemoryStorage
from support.pack_threads import add_from_threads

FAST = settings(max_examples=80, deadline=None)
U32 = 2**32 - 1


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def blob_lists(draw: st.DrawFn, min_size: int = 0) -> list[PackedBlob]:
    specs = draw(st.lists(
        st.tuples(
            st.sampled_from(list(BlobType)),
            st.binary(min_size=32, max_size=32),
            st.integers(32, U32),
            st.one_of(st.just(0), st.integers(1, U32)),
        ),
        min_size=min_size, max_size=25,
    ))
    blobs, offset = [], 0
    for btype, blob_id, length, ulen in specs:
        blobs.append(PackedBlob(btype, blob_id, offset, length, ulen))
        offset += length
    return blobs


def reference_entry(b: PackedBlob) -> bytes:
    code = {BlobType.DATA: 0, BlobType.TREE: 1}[b.type]
    if b.uncompressed_length:
        return bytes([code + 2]) + struct.pack("<I", b.length) + \
            struct.pack("<I", b.uncompressed_length) + b.id
    return bytes([code]) + struct.pack("<I", b.length) + b.id


# ---- header encoding ------------------------------------------------------------------


@FAST
@given(blobs=blob_lists())
def test_header_round_trip(blobs: list[PackedBlob]) -> None:
    header = encode_header(blobs)
    assert header == b"".join(reference_entry(b) for b in blobs)
    assert len(header) == sum(41 if b.compressed else 37 for b in blobs)
    assert decode_header(header) == blobs


def test_entry_layouts() -> None:
    blob_id = bytes(range(32))
    data = PackedBlob(BlobType.DATA, blob_id, 0, 0x01020304)
    tree = PackedBlob(BlobType.TREE, blob_id, 0x01020304, 40)
    zdata = PackedBlob(BlobType.DATA, blob_id, 0, 50, 7)
    ztree = PackedBlob(BlobType.TREE, blob_id, 0, 50, 0x0A0B0C0D)
    assert encode_header([data]) == b"\x00\x04\x03\x02\x01" + blob_id
    assert encode_header([tree]) == b"\x01\x28\x00\x00\x00" + blob_id
    assert encode_header([zdata]) == b"\x02\x32\x00\x00\x00\x07\x00\x00\x00" + blob_id
    assert encode_header([ztree]) == b"\x03\x32\x00\x00\x00\x0d\x0c\x0b\x0a" + blob_id
    assert not data.compressed and zdata.compressed
    assert data.plain_length == 0x01020304 - 32 and zdata.plain_length == 7


def test_decoded_offsets_are_cumulative() -> None:
    header = b"".join([
        b"\x00" + struct.pack("<I", 100) + b"a" * 32,
        b"\x02" + struct.pack("<II", 60, 1000) + b"b" * 32,
        b"\x00" + struct.pack("<I", 33) + b"c" * 32,
    ])
    assert [(b.offset, b.length, b.uncompressed_length) for b in decode_header(header)] == [
        (0, 100, 0), (100, 60, 1000), (160, 33, 0)]


@FAST
@given(blobs=blob_lists(min_size=1), data=st.data())
def test_invalid_type_byte_is_rejected(blobs: list[PackedBlob], data: st.DataObject) -> None:
    header = bytearray(encode_header(blobs))
    # Overwrite the type byte of one entry with an invalid one.
    starts = [0]
    for b in blobs:
        starts.append(starts[-1] + (41 if b.compressed else 37))
    pos = data.draw(st.sampled_from(starts[:-1]))
    header[pos] = data.draw(st.integers(4, 255))
    with pytest.raises(IntegrityError, match="invalid blob type"):
        decode_header(bytes(header), "pack 0123")


@FAST
@given(blobs=blob_lists(min_size=1), data=st.data())
def test_truncated_entry_is_rejected(blobs: list[PackedBlob], data: st.DataObject) -> None:
    header = encode_header(blobs)
    boundaries = {0}
    for b in blobs:
        boundaries.add(max(boundaries) + (41 if b.compressed else 37))
    cut = data.draw(st.integers(1, len(header) - 1))
    assume(cut not in boundaries)
    with pytest.raises(IntegrityError, match="truncated"):
        decode_header(header[:cut])


@pytest.mark.parametrize("length", [0, 1, 31])
def test_blob_shorter_than_overhead_is_rejected(length: int) -> None:
    header = b"\x01" + struct.pack("<I", length) + b"x" * 32
    with pytest.raises(IntegrityError):
        decode_header(header)


def test_empty_header_decodes_to_nothing() -> None:
    assert decode_header(b"") == []


# ---- real packs -----------------------------------------------------------------------


def write_pack(key: Key, blob_type: BlobType, plaintexts: list[bytes], version: int = 2
               ) -> tuple[MemoryStorage, bytes, list[PackedBlob]]:
    storage = MemoryStorage()
    saved: list[tuple[bytes, list[PackedBlob]]] = []
    writer = PackWriter(storage, key, blob_type, lambda pid, bl: saved.append((pid, bl)),
                        version=version)
    for p in plaintexts:
        writer.add(hashlib.sha256(p).digest(), p)
    writer.flush()
    assert len(saved) == 1
    pack_id, blobs = saved[0]
    return storage, storage.load(Handle(FileType.DATA, pack_id.hex())), blobs


PLAINTEXTS = [b"a" * 5000, os.urandom(3000), b"", b'{"nodes":[]}\n', os.urandom(10)]


def test_read_pack_header_of_a_real_pack(key: Key) -> None:
    storage, pack, blobs = write_pack(key, BlobType.DATA, PLAINTEXTS)
    [info] = list(storage.list(FileType.DATA))
    assert info.name == hashlib.sha256(pack).hexdigest()
    assert read_pack_header(pack, key, "pack") == blobs
    # Each entry points at a sealed blob that opens (and decompresses) to its plaintext.
    zstd = zstandard.ZstdDecompressor()
    for b, plain in zip(blobs, PLAINTEXTS, strict=True):
        assert b.id == hashlib.sha256(plain).digest()
        opened = key.open(pack[b.offset:b.offset + b.length])
        assert (zstd.decompress(opened) if b.compressed else opened) == plain
    # Compressible data was compressed, random data and the empty blob were not.
    assert [b.compressed for b in blobs] == [True, False, False, False, False]
    # The file is: blobs, sealed header, header length.
    (hlen,) = struct.unpack("<I", pack[-4:])
    assert len(pack) == sum(b.length for b in blobs) + hlen + 4
    assert key.open(pack[-4 - hlen:-4]) == b"".join(reference_entry(b) for b in blobs)


def test_tree_packs_are_always_compressed_in_v2(key: Key) -> None:
    trees = [os.urandom(100), b'{"nodes":[]}\n']
    _, pack, blobs = write_pack(key, BlobType.TREE, trees)
    assert all(b.type is BlobType.TREE and b.compressed for b in blobs)
    assert read_pack_header(pack, key, "pack") == blobs


def test_v1_packs_are_never_compressed(key: Key) -> None:
    _, pack, blobs = write_pack(key, BlobType.TREE, [b"t" * 1000], version=1)
    assert not blobs[0].compressed
    (hlen,) = struct.unpack("<I", pack[-4:])
    header = key.open(pack[-4 - hlen:-4])
    assert len(header) == 37 and header[0] == 0x01
    assert key.open(pack[:blobs[0].length]) == b"t" * 1000


def test_pack_writer_skips_duplicates_in_the_open_pack(key: Key) -> None:
    _, _, blobs = write_pack(key, BlobType.DATA, [b"dup" * 100, b"dup" * 100, b"other"])
    assert len(blobs) == 2


def test_pack_writer_cuts_packs_at_target_size(key: Key) -> None:
    storage = MemoryStorage()
    saved: list[bytes] = []
    writer = PackWriter(storage, key, BlobType.DATA, lambda pid, bl: saved.append(pid),
                        target_size=10_000, compress_data=False)
    for i in range(10):
        writer.add(hashlib.sha256(bytes([i])).digest(), os.urandom(3000))
    assert len(saved) == 2  # cut after blobs 4 and 8
    writer.flush()
    assert len(saved) == 3
    assert {i.name for i in storage.list(FileType.DATA)} == {p.hex() for p in saved}


def test_truncated_packs_are_rejected(key: Key) -> None:
    _, pack, _ = write_pack(key, BlobType.DATA, PLAINTEXTS)
    for bad in (pack[1:], pack[:-1], pack[:-4], pack[:35], b"", pack[:100] + pack[101:],
                b"\x00" + pack):
        with pytest.raises(IntegrityError, match="pack 0badc0de"):
            read_pack_header(bad, key, "pack 0badc0de")


def test_every_bit_flip_in_the_header_or_its_length_is_detected(key: Key) -> None:
    _, pack, _ = write_pack(key, BlobType.DATA, PLAINTEXTS[:3])
    (hlen,) = struct.unpack("<I", pack[-4:])
    for bit in range((len(pack) - 4 - hlen) * 8, len(pack) * 8):
        with pytest.raises(IntegrityError):
            read_pack_header(flip_bit(pack, bit), key, "pack")


def test_header_of_another_key_is_rejected(key: Key) -> None:
    _, pack, _ = write_pack(key, BlobType.DATA, PLAINTEXTS)
    with pytest.raises(IntegrityError):
        read_pack_header(pack, Key.random(), "pack")


@pytest.mark.parametrize("hlen", [0, 31, 2**32 - 1, 16 * 1024 * 1024 + 5])
def test_impossible_header_lengths_are_rejected(key: Key, hlen: int) -> None:
    pack = os.urandom(200) + struct.pack("<I", hlen)
    with pytest.raises(IntegrityError, match="header length"):
        read_pack_header(pack, key, "pack")


def test_threads_sealing_into_one_pack_at_once_give_valid_packs(key: Key) -> None:
    """Blobs added from several threads at once are sealed in place, in parallel, into
    reused pack buffers: every pack written is whole, and every blob opens to its bytes."""
    import random
    import threading

    storage = MemoryStorage()
    saved: list[tuple[bytes, list[PackedBlob]]] = []
    lock = threading.Lock()

    def on_saved(pid: bytes, blobs: list[PackedBlob]) -> None:
        with lock:
            saved.append((pid, blobs))

    writer = PackWriter(storage, key, BlobType.DATA, on_saved, target_size=256 * 1024)
    rng = random.Random(3)
    data = [rng.randbytes(rng.randrange(0, 70_000)) + b"z" * rng.randrange(0, 9000)
            for _ in range(400)]
    data.append(rng.randbytes(3 * 1024 * 1024))  # larger than a pack buffer's spare room
    added = [0] * 4

    def work(part: int) -> None:
        for d in data[part::4]:
            added[part] += writer.add(hashlib.sha256(d).digest(), d)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    by_id = {hashlib.sha256(d).digest(): d for d in data}
    seen = set()
    for pack_id, blobs in saved:
        pack = storage.load(Handle(FileType.DATA, pack_id.hex()))
        assert hashlib.sha256(pack).digest() == pack_id
        assert read_pack_header(pack, key, "pack") == blobs
        for b in blobs:
            plain = key.open(pack[b.offset : b.offset + b.length])
            if b.compressed:
                plain = zstandard.ZstdDecompressor().decompress(plain)
            assert plain == by_id[b.id]
            seen.add(b.id)
    assert seen == set(by_id)
    assert sum(added) == sum(b.length for _, blobs in saved for b in blobs)
    assert len(saved) > 10


class _SlowStorage(MemoryStorage):
    """Saves take a while (like a pack's fsync), and the n-th save may fail."""

    def __init__(self, fail_at: int = 0) -> None:
        super().__init__()
        self.saves = 0
        self.fail_at = fail_at

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        import time

        self.saves += 1
        if self.saves == self.fail_at:
            raise OSError("disk full")
        time.sleep(0.02)
        super().save(handle, data)


def test_at_most_two_pack_buffers_are_in_use_while_packs_are_slow_to_write(key: Key) -> None:
    import mmap as mmap_mod

    storage = _SlowStorage()
    saved: list[bytes] = []
    writer = PackWriter(storage, key, BlobType.DATA, lambda pid, bl: saved.append(pid),
                        target_size=256 * 1024, compress_data=False)
    mapped = [0]
    peak = [0]
    real = mmap_mod.mmap

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: object, **kw: object) -> None:
            mapped[0] += 1
            peak[0] = max(peak[0], writer._live)

    import airflow_backup.repository.packer as packer_mod

    packer_mod.mmap.mmap = Counting  # type: ignore[misc]
    try:
        assert add_from_threads(writer) == []
    finally:
        packer_mod.mmap.mmap = real  # type: ignore[misc]
    writer.flush()
    assert len(saved) >= 20 and storage.saves == len(saved)
    assert writer._live <= 2 and peak[0] <= 2  # _live counts the buffer being mapped
    assert mapped[0] >= 2, (mapped, peak)


def test_a_failed_pack_write_wakes_every_thread_waiting_for_a_buffer(key: Key) -> None:
    storage = _SlowStorage(fail_at=3)
    writer = PackWriter(storage, key, BlobType.DATA, lambda pid, bl: None,
                        target_size=256 * 1024, compress_data=False)
    errors = add_from_threads(writer)
    assert errors and all(isinstance(e, OSError) for e in errors)
    with pytest.raises(OSError, match="disk full"):
        writer.add(b"\x01" * 32, b"more")


class _FullWhileViewing(MemoryStorage):
    """Fails like a full disk while a view of the pack is alive in its frame (as
    LocalStorage.save once kept one): the error's traceback keeps the view, and so the
    pack buffer exported."""

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        raise PermanentStorageError(f"save {handle.name}: No space left on device ({len(view)})")


def test_a_storage_error_is_not_masked_by_the_buffer_still_being_viewed(key: Key) -> None:
    writer = PackWriter(_FullWhileViewing(), key, BlobType.DATA, lambda pid, bl: None,
                        target_size=256 * 1024, compress_data=False)
    with pytest.raises(PermanentStorageError, match="No space left on device"):
        for i in range(40):
            d = hashlib.sha256(i.to_bytes(4, "big")).digest() * 900
            writer.add(hashlib.sha256(d).digest(), d)
        writer.flush()
    with pytest.raises(PermanentStorageError):  # the writer keeps reporting it
        writer.add(b"\x02" * 32, b"more")
