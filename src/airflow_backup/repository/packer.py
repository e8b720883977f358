"""Pack writers: collect sealed blobs of one type until a pack reaches its target size.

Data and tree blobs never share a pack (a v2 rule). A finished pack is stored before its blobs
enter the index, so the index never names a pack that is not durable.
"""

from __future__ import annotations

import hashlib
import queue
import struct
import threading
from collections.abc import Callable

import zstandard

from airflow_backup.repository.crypto import Key
from airflow_backup.repository.packs import BlobType, PackedBlob, encode_header
from airflow_backup.storage.base import FileType, Handle, Storage

__all__ = ["DEFAULT_PACK_SIZE", "PackWriter", "SavedPack"]

DEFAULT_PACK_SIZE = 16 * 1024 * 1024

SavedPack = tuple[bytes, list[PackedBlob]]


class PackWriter:
    """Accumulates blobs of one type and writes a pack file whenever it is full.

    ``on_saved(pack_id, blobs)`` is called after each pack is durably stored.
    """

    def __init__(
        self,
        storage: Storage,
        key: Key,
        blob_type: BlobType,
        on_saved: Callable[[bytes, list[PackedBlob]], None],
        *,
        version: int = 2,
        compress_data: bool = True,
        target_size: int = DEFAULT_PACK_SIZE,
    ) -> None:
        self._storage = storage
        self._key = key
        self._type = blob_type
        self._on_saved = on_saved
        self._version = version
        self._compress = version >= 2 and (compress_data or blob_type is BlobType.TREE)
        self._target = target_size
        self._buf = bytearray()
        self._blobs: list[PackedBlob] = []
        self._pending: set[bytes] = set()
        self._lock = threading.Lock()
        # zstd contexts cost ~4 MiB each: share a few instead of one per worker thread.
        self._zstd: queue.SimpleQueue[zstandard.ZstdCompressor] = queue.SimpleQueue()

    def is_pending(self, blob_id: bytes) -> bool:
        """Return whether the blob is queued in the unfinished pack."""
        return blob_id in self._pending

    def seal_blob(self, plaintext: bytes | memoryview) -> tuple[bytes, int]:
        """Compress (when it helps, and always for trees) and encrypt one blob; return
        (sealed bytes, uncompressed length or 0). Thread-safe; does not touch the pack."""
        ulen = 0
        payload: bytes | memoryview = plaintext
        if self._compress and len(plaintext):
            try:
                comp = self._zstd.get_nowait()
            except queue.Empty:
                comp = zstandard.ZstdCompressor(level=3, write_checksum=False)
            try:
                packed = comp.compress(plaintext)
            finally:
                self._zstd.put(comp)
            if self._type is BlobType.TREE or len(packed) < len(plaintext):
                payload, ulen = packed, len(plaintext)
        return self._key.seal(payload), ulen

    def add_sealed(self, blob_id: bytes, sealed: bytes, ulen: int) -> int:
        """Append a sealed blob unless it is already queued; return the bytes added."""
        with self._lock:
            if blob_id in self._pending:
                return 0
            self._blobs.append(PackedBlob(self._type, blob_id, len(self._buf), len(sealed), ulen))
            self._buf += sealed
            self._pending.add(blob_id)
            full = len(self._buf) >= self._target
            if full:
                buf, blobs = self._take()
        if full:
            self._write(buf, blobs)
        return len(sealed)

    def add(self, blob_id: bytes, plaintext: bytes | memoryview) -> int:
        """Seal and append one blob; return the bytes it adds to the pack."""
        sealed, ulen = self.seal_blob(plaintext)
        return self.add_sealed(blob_id, sealed, ulen)

    def _take(self) -> tuple[bytearray, list[PackedBlob]]:
        buf, blobs = self._buf, self._blobs
        self._buf, self._blobs = bytearray(), []
        return buf, blobs

    def _write(self, buf: bytearray, blobs: list[PackedBlob]) -> None:
        header = self._key.seal(encode_header(blobs))
        buf += header
        buf += struct.pack("<I", len(header))
        pack_id = hashlib.sha256(buf).digest()
        # The buffer itself is stored (no 16 MiB copy); nothing touches it afterwards.
        self._storage.save(Handle(FileType.DATA, pack_id.hex()), buf)
        self._on_saved(pack_id, blobs)
        with self._lock:
            for b in blobs:
                self._pending.discard(b.id)

    def flush(self) -> None:
        """Write the unfinished pack, if it holds any blob."""
        with self._lock:
            if not self._blobs:
                return
            buf, blobs = self._take()
        self._write(buf, blobs)

