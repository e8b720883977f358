"""Pack files: sealed blobs, then a sealed header, then the header's length (uint32 LE).

Header entries: type byte, then the sealed blob length (uint32 LE), for compressed types the
plaintext length (uint32 LE), then the 32-byte blob id. Types 0/1 are plain data/tree blobs,
2/3 their compressed variants (repository v2 only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.crypto import EXTENSION, Key

__all__ = ["BlobType", "PackedBlob", "decode_header", "encode_header", "header_length",
           "open_header", "read_pack_header"]

MAX_HEADER = 16 * 1024 * 1024 + 4
_PLAIN_ENTRY = 1 + 4 + 32
_COMPRESSED_ENTRY = 1 + 4 + 4 + 32
# How much to fetch eagerly from the end of a pack: 15 entries plus the overhead (as restic).
EAGER_TAIL = 15 * _COMPRESSED_ENTRY + EXTENSION + 4


class BlobType(Enum):
    """The two kinds of blob; the value is the name used in index JSON."""

    DATA = "data"
    TREE = "tree"


@dataclass(frozen=True, slots=True)
class PackedBlob:
    """A blob's place in a pack: offset and sealed length; ``uncompressed_length`` is 0 when
    the blob is stored uncompressed."""

    type: BlobType
    id: bytes
    offset: int
    length: int
    uncompressed_length: int = 0

    @property
    def compressed(self) -> bool:
        """Return whether the stored plaintext is a zstd frame."""
        return self.uncompressed_length != 0

    @property
    def plain_length(self) -> int:
        """Return the plaintext length once decrypted and decompressed."""
        return self.uncompressed_length or self.length - EXTENSION


def encode_header(blobs: list[PackedBlob]) -> bytes:
    """Return the plaintext header for ``blobs`` in pack order."""
    parts: list[bytes] = []
    for b in blobs:
        code = 0 if b.type is BlobType.DATA else 1
        if b.compressed:
            parts.append(struct.pack("<BII", code + 2, b.length, b.uncompressed_length) + b.id)
        else:
            parts.append(struct.pack("<BI", code, b.length) + b.id)
    return b"".join(parts)


def decode_header(header: bytes, what: str = "pack") -> list[PackedBlob]:
    """Parse a plaintext pack header. Raise IntegrityError if it is malformed."""
    blobs: list[PackedBlob] = []
    offset = 0
    pos = 0
    n = len(header)
    while pos < n:
        code = header[pos]
        if code in (0, 1):
            if pos + _PLAIN_ENTRY > n:
                raise IntegrityError(f"{what}: truncated header entry")
            (length,) = struct.unpack_from("<I", header, pos + 1)
            blob_id = header[pos + 5 : pos + 37]
            ulen = 0
            pos += _PLAIN_ENTRY
        elif code in (2, 3):
            if pos + _COMPRESSED_ENTRY > n:
                raise IntegrityError(f"{what}: truncated header entry")
            length, ulen = struct.unpack_from("<II", header, pos + 1)
            blob_id = header[pos + 9 : pos + 41]
            pos += _COMPRESSED_ENTRY
        else:
            raise IntegrityError(f"{what}: invalid blob type {code} in header")
        if length < EXTENSION:
            raise IntegrityError(f"{what}: blob length {length} too short")
        btype = BlobType.DATA if code in (0, 2) else BlobType.TREE
        blobs.append(PackedBlob(btype, bytes(blob_id), offset, length, ulen))
        offset += length
    return blobs


def header_length(tail: bytes | memoryview, size: int, what: str) -> int:
    """Given the last bytes (at least 4) of a pack file of ``size`` bytes, return the length of
    its sealed header. Raise IntegrityError if the file cannot hold a header that long."""
    if size < 4 + EXTENSION:
        raise IntegrityError(f"{what}: file too short to be a pack ({size} bytes)")
    (hlen,) = struct.unpack_from("<I", tail, len(tail) - 4)
    if hlen > MAX_HEADER or hlen + 4 > size or hlen < EXTENSION:
        raise IntegrityError(f"{what}: invalid header length {hlen}")
    return int(hlen)


def open_header(sealed: bytes | memoryview, key: Key, size: int, what: str) -> list[PackedBlob]:
    """Given a pack's sealed header and the pack's size, return its blob entries. Raise
    IntegrityError if the header is damaged or does not describe a file of that size."""
    blobs = decode_header(key.open(sealed, what=f"{what} header"), what)
    end = blobs[-1].offset + blobs[-1].length if blobs else 0
    if end + len(sealed) + 4 != size:
        raise IntegrityError(f"{what}: header does not describe the file's size")
    return blobs


def read_pack_header(pack: bytes | memoryview, key: Key, what: str) -> list[PackedBlob]:
    """Given a whole pack file, return its blob entries. Raise IntegrityError if the header
    is damaged or inconsistent."""
    hlen = header_length(pack, len(pack), what)
    return open_header(pack[len(pack) - 4 - hlen : len(pack) - 4], key, len(pack), what)
