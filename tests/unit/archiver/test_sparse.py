"""Sparse files: holes are not read, yet the chunks are exactly those of reading the zeros."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from airflow_backup.archiver.chunker import MAX_SIZE, MIN_SIZE, Chunker
from airflow_backup.archiver.content import ContentSaver
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.memory import MemoryStorage

MiB = 1024 * 1024

# (offset, length) of random data in a file of the given size; the rest is holes. Holes
# shorter than, equal to and just over one chunk's window, many windows long, at the start
# and at the end; data regions from a few bytes to several chunks.
LAYOUTS = {
    "holes between data": (
        40 * MiB, [(0, 3 * MiB), (3 * MiB + 100, 5000), (12 * MiB, MiB), (30 * MiB + 7, 2 * MiB)]),
    "leading and trailing holes": (
        3 * MAX_SIZE + 12345, [(MAX_SIZE + 1, 700_000)]),
    "window-sized holes": (
        2 * MAX_SIZE + 2 * MiB, [(MiB, MiB), (MAX_SIZE + 2 * MiB, MiB)]),
    "all hole": (5 * MAX_SIZE, []),
    "long holes, short data": (
        64 * MiB, [(o, 4096) for o in range(5 * MiB, 64 * MiB, 9 * MiB + 4096)]),
}


def _regions(seed: int, layout: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    return [(offset, rnd.randbytes(length)) for offset, length in layout]


def _write_sparse(path: Path, size: int, regions: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in regions:
            f.seek(offset)
            f.write(data)


def _dense(size: int, regions: list[tuple[int, bytes]]) -> bytes:
    whole = bytearray(size)
    for offset, data in regions:
        whole[offset : offset + len(data)] = data
    return bytes(whole)


def _has_holes(path: Path) -> bool:
    st = os.stat(path)
    return st.st_blocks * 512 < st.st_size


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_sparse_file_saves_the_chunks_of_its_bytes_read_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    size, layout = LAYOUTS[name]
    regions = _regions(len(name), layout)
    sparse, dense = tmp_path / "sparse", tmp_path / "dense"
    _write_sparse(sparse, size, regions)
    dense.write_bytes(_dense(size, regions))
    whole = dense.read_bytes()
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    expected = [hashlib.sha256(whole[o : o + n]).digest() for o, n in chunker.cut(whole)]

    reads: list[int] = []
    preadv = os.preadv

    def counting_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        n = preadv(fd, buffers, offset)
        reads.append(n)
        return n

    monkeypatch.setattr(os, "preadv", counting_preadv)
    with ContentSaver(repo, chunker) as saver:
        from_sparse = saver.submit_file(os.fsencode(sparse), size).result()
        read_bytes = sum(reads)
        from_dense = saver.submit_file(os.fsencode(dense), size).result()
    assert from_sparse.content == expected == from_dense.content
    assert from_sparse.size == size == from_dense.size
    if _has_holes(sparse):  # the file system made holes: they were not read
        assert read_bytes <= sum(len(d) for _, d in regions) + 2 * 4096 * (len(regions) + 1)
    assert read_bytes <= sum(reads) - read_bytes  # the dense file was read in full
    repo.flush()
    assert b"".join(repo.load_blob(BlobType.DATA, b) for b in from_sparse.content) == whole


def test_the_zero_chunk_is_saved_once_and_restores(tmp_path: Path) -> None:
    """A file of holes only: every chunk but the last is the all-zero chunk; its blob is
    stored once, with the right bytes, and a second file adds nothing."""
    size = 6 * MAX_SIZE + MIN_SIZE + 3
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    for name in ("a", "b"):
        _write_sparse(tmp_path / name, size, [])
    with ContentSaver(repo, chunker) as saver:
        first = saver.submit_file(os.fsencode(tmp_path / "a"), size).result()
        second = saver.submit_file(os.fsencode(tmp_path / "b"), size).result()
    repo.flush()
    assert first.content == second.content and second.new_blobs == 0
    zero_ids = set(first.content)
    assert first.new_blobs == len(zero_ids) <= 2
    restored = b"".join(repo.load_blob(BlobType.DATA, b) for b in first.content)
    assert restored == bytes(size)


def test_without_hole_support_the_file_is_read(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    size, layout = LAYOUTS["holes between data"]
    regions = _regions(1, layout)
    path = tmp_path / "sparse"
    _write_sparse(path, size, regions)
    whole = _dense(size, regions)
    lseek = os.lseek

    def no_holes(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_HOLE, os.SEEK_DATA):
            raise OSError(22, "Invalid argument")
        return lseek(fd, pos, how)

    monkeypatch.setattr(os, "lseek", no_holes)
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    with ContentSaver(repo, chunker) as saver:
        result = saver.submit_file(os.fsencode(path), size).result()
    assert result.content == [hashlib.sha256(whole[o : o + n]).digest()
                              for o, n in chunker.cut(whole)]
