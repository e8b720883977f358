"""Unpacked files (config, index, snapshot, lock): JSON, compressed in v2, then sealed.

A v2 plaintext is ``0x02 ‖ zstd(JSON)``; a plaintext that starts with ``[`` or ``{`` is plain
JSON (v1 and restic's backward compatibility). The config file is never compressed. The
storage id of every unpacked file except config is the SHA-256 of its sealed bytes.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import zstandard

from airflow_backup.errors import IntegrityError
from airflow_backup.repository import gojson
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.scratch import UNPACKED, scratch
from airflow_backup.storage.base import FileType, Handle, Storage

__all__ = [
    "compress",
    "decode_unpacked",
    "decompress",
    "decompress_sized",
    "encode_unpacked",
    "load_json",
    "save_json",
]

_MAX_DECOMPRESSED = 1 << 34


def compress(data: bytes) -> bytes:
    """Return a zstd frame of ``data`` (level 3, no checksum, as restic's encoder)."""
    return zstandard.ZstdCompressor(level=3, write_checksum=False).compress(data)


_local = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    # One per thread: a decompressor is not safe to share, and making one per blob costs
    # about as much as decompressing a small blob.
    d: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def decompress(data: bytes | memoryview, what: str) -> bytes:
    """Decompress a zstd frame. Raise IntegrityError naming ``what`` if it is not valid."""
    try:
        return _decompressor().decompress(data, max_output_size=_MAX_DECOMPRESSED)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{what}: invalid zstd data: {exc}") from exc


# Below this, one-shot decompression into a new buffer is cheaper than a stream reader;
# above it the new buffer's page faults cost more.
_INTO_MIN = 128 << 10


def decompress_sized(data: bytes | memoryview, size: int, what: str) -> bytes | memoryview:
    """Decompress a zstd frame that must hold exactly ``size`` bytes. A large one goes into
    this thread's scratch buffer and comes back as a view of it, valid until the thread's
    next call. Raise IntegrityError naming ``what`` if the frame is invalid or its size is
    not ``size``."""
    if size < _INTO_MIN or size > _MAX_DECOMPRESSED:
        plain = decompress(data, what)
        if len(plain) != size:
            raise IntegrityError(f"{what}: wrong uncompressed length")
        return plain
    out = scratch(size + 1, UNPACKED)  # one byte more, to see a frame that holds more
    n = 0
    try:
        with _decompressor().stream_reader(data, read_across_frames=False) as reader:
            while n <= size:
                k = reader.readinto(out[n : size + 1])
                if not k:
                    break
                n += k
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{what}: invalid zstd data: {exc}") from exc
    if n != size:
        raise IntegrityError(f"{what}: wrong uncompressed length")
    return out[:size]


def encode_unpacked(key: Key, payload: bytes, version: int, compress_it: bool = True) -> bytes:
    """Return the sealed bytes of an unpacked file holding ``payload`` (JSON bytes)."""
    if version >= 2 and compress_it:
        payload = b"\x02" + compress(payload)
    return key.seal(payload)


def decode_unpacked(key: Key, sealed: bytes, what: str) -> bytes:
    """Open a sealed unpacked file; return its JSON bytes. Raise IntegrityError if damaged."""
    plain = key.open(sealed, what=what)
    if not plain:
        raise IntegrityError(f"{what}: empty file")
    first = plain[0]
    if first in (0x5B, 0x7B):
        return plain
    if first == 2:
        return decompress(memoryview(plain)[1:], what)
    raise IntegrityError(f"{what}: unknown encoding version {first}")


def save_json(storage: Storage, key: Key, file_type: FileType, obj: Any, version: int) -> str:
    """Encode ``obj`` as Go-style JSON, seal it and store it; return its storage id."""
    sealed = encode_unpacked(key, gojson.dumps(obj), version)
    file_id = hashlib.sha256(sealed).hexdigest()
    storage.save(Handle(file_type, file_id), sealed)
    return file_id


def load_json(storage: Storage, key: Key, handle: Handle, verify_id: bool = True) -> Any:
    """Load, verify and parse an unpacked file. Raise IntegrityError if it is damaged."""
    sealed = storage.load(handle)
    what = str(handle)
    if (verify_id and handle.type is not FileType.CONFIG
            and hashlib.sha256(sealed).hexdigest() != handle.name):
        raise IntegrityError(f"{what}: content does not match its id")
    raw = decode_unpacked(key, sealed, what)
    try:
        return gojson.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"{what}: invalid JSON") from exc
