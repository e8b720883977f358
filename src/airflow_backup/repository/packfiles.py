"""Pack files as stored: read a pack's header from its tail, compute the size an index implies,
and merge the packs that several index files describe.

Used by check, prune and repair, which must see every copy of every blob (the in-memory
:class:`~airflow_backup.repository.index.Index` keeps only one location per blob).
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.crypto import EXTENSION, Key
from airflow_backup.repository.index import encode_index
from airflow_backup.repository.packs import (
    EAGER_TAIL,
    BlobType,
    PackedBlob,
    encode_header,
    header_length,
    open_header,
)
from airflow_backup.repository.repo import INDEX_MAX_BLOBS, Repository
from airflow_backup.repository.unpacked import save_json
from airflow_backup.storage.base import FileType, Handle, Storage

__all__ = [
    "BlobKey",
    "expected_pack_size",
    "header_size",
    "load_pack_header",
    "merge_index_files",
    "pack_type",
    "write_index",
]

BlobKey = tuple[BlobType, bytes]


def header_size(blobs: list[PackedBlob]) -> int:
    """Given a pack's blobs, return the stored size of its header (sealed, plus the 4-byte
    length)."""
    return len(encode_header(blobs)) + EXTENSION + 4


def expected_pack_size(blobs: list[PackedBlob]) -> int:
    """Given every blob an index lists for a pack, return the pack file's size they imply."""
    return sum(b.length for b in blobs) + header_size(blobs)


def pack_type(blobs: Iterable[PackedBlob]) -> BlobType | None:
    """Return the one blob type of a pack, or None if it mixes data and tree blobs (or is
    empty)."""
    types = {b.type for b in blobs}
    return types.pop() if len(types) == 1 else None


def load_pack_header(storage: Storage, key: Key, pack: str, size: int) -> list[PackedBlob]:
    """Given a pack's hex id and its stored size, read only its tail and return the blobs
    its header lists. Raise IntegrityError if the header is damaged or does not describe a
    file of that size, NotFound if the pack is missing."""
    what = f"pack {pack}"
    handle = Handle(FileType.DATA, pack)
    tail_len = min(size, EAGER_TAIL)
    tail = storage.load(handle, size - tail_len, tail_len)
    if len(tail) != tail_len:
        raise IntegrityError(f"{what}: short read of the header")
    hlen = header_length(tail, size, what)
    if hlen + 4 <= len(tail):
        sealed = tail[len(tail) - 4 - hlen : len(tail) - 4]
    else:
        sealed = storage.load(handle, size - 4 - hlen, hlen)
    return open_header(sealed, key, size, what)


def merge_index_files(
    files: Iterable[tuple[str, dict[bytes, list[PackedBlob]]]],
) -> tuple[dict[bytes, list[PackedBlob]], dict[bytes, list[str]]]:
    """Given (index id, packs) per index file, return (pack id -> blobs, pack id -> the ids of
    the index files naming it). A pack named twice keeps the blob list seen first."""
    packs: dict[bytes, list[PackedBlob]] = {}
    named_by: dict[bytes, list[str]] = {}
    for index_id, file_packs in files:
        for pack_id, blobs in file_packs.items():
            packs.setdefault(pack_id, blobs)
            named_by.setdefault(pack_id, []).append(index_id)
    return packs, named_by


def write_index(repo: Repository, packs: dict[bytes, list[PackedBlob]]) -> int:
    """Given packs, write index files describing them (at most 50,000 blobs each); return how
    many files were written."""
    written = 0
    chunk: dict[bytes, list[PackedBlob]] = {}
    count = 0
    for pack_id, blobs in packs.items():
        chunk[pack_id] = blobs
        count += len(blobs)
        if count >= INDEX_MAX_BLOBS:
            save_json(repo.storage, repo.key, FileType.INDEX, encode_index(chunk), repo.version)
            written += 1
            chunk, count = {}, 0
    if chunk:
        save_json(repo.storage, repo.key, FileType.INDEX, encode_index(chunk), repo.version)
        written += 1
    return written
