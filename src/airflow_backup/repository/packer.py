"""Pack writers: collect sealed blobs of one type until a pack reaches its target size.

Data and tree blobs never share a pack (a v2 rule). A finished pack is stored before its blobs
enter the index, so the index never names a pack that is not durable.

Blobs are sealed straight into the pack: a thread adding a blob reserves its place in the
pack under the lock, then compresses and encrypts into that place without it, so threads seal
in parallel and no ciphertext is copied. The thread that finishes the last blob of a full
pack stores it. Pack buffers are anonymous maps reused from pack to pack, so the kernel does
not fault in and zero 16 MiB of fresh memory per pack.

On a local store that thread writes the pack itself, and at most two pack buffers exist. On a
remote store (one that is not strongly consistent: object stores, network file systems) an
upload takes round trips and the link's time, during which the thread would stop reading and
sealing; there the thread hands the full pack to an upload thread of the writer's and goes
on, with up to ``_REMOTE_LIVE`` pack buffers in use (filling or uploading). A pack's blobs
count as pending (:meth:`PackWriter.is_pending`) until it is stored and
``on_saved`` has run, so no blob is stored twice and none is indexed early.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import queue
import struct
import threading
from collections.abc import Callable

import zstandard

from airflow_backup.repository.crypto import EXTENSION, Key
from airflow_backup.repository.packs import BlobType, PackedBlob, encode_header
from airflow_backup.storage.base import (
    FileType,
    Handle,
    Storage,
    io_workers,
    is_strongly_consistent,
)

__all__ = ["DEFAULT_PACK_SIZE", "PackWriter", "SavedPack", "blob_payload", "new_compressor"]

DEFAULT_PACK_SIZE = 16 * 1024 * 1024

SavedPack = tuple[bytes, list[PackedBlob]]

_SLACK = 16  # the cipher API wants a block of room after the data it encrypts in place
_ENTRY_MAX = 1 + 4 + 4 + 32  # one header entry (compressed form)
_SPARES = 1  # pack buffers kept for reuse: one fills while the other is written
# Pack buffers in use at once on a local store (filling, sealed into, being written, or
# spare). When both are busy, a thread that needs a new pack waits for a write to finish
# rather than map a third 16 MiB buffer: three at once were a large share of a backup's peak
# memory.
_MAX_LIVE = 2
# Pack buffers in use at once on a remote store (filling, uploading, or spare; about 17 MiB
# resident each, and an upload holds a copy of its pack in the storage library too): usually
# two uploads and one pack filling. Two in all, written by the filling threads, left the
# link idle for a PUT's round trips between packs and stopped the reading meanwhile; four
# were no faster than three in the 30 ms bench and took 55 MiB more at the peak (issue 26).
_REMOTE_LIVE = 3


def _header_max(blobs: int) -> int:
    """Return the most room a header for ``blobs`` entries takes, sealed, with its length."""
    return blobs * _ENTRY_MAX + EXTENSION + 4


def new_compressor() -> zstandard.ZstdCompressor:
    """Return a compressor with the settings of every blob we write (zstd level 3, no frame
    checksum: the blob's SHA-256 and MAC already cover it)."""
    return zstandard.ZstdCompressor(level=3, write_checksum=False)


def blob_payload(comp: zstandard.ZstdCompressor, plaintext: bytes | memoryview,
                 blob_type: BlobType) -> tuple[bytes | memoryview, int]:
    """Given a blob's non-empty plaintext, return (payload to seal, uncompressed length or 0):
    compressed when that is smaller, and always for trees, as restic does."""
    packed = comp.compress(plaintext)
    if blob_type is BlobType.TREE or len(packed) < len(plaintext):
        return packed, len(plaintext)
    return plaintext, 0


class _Pack:
    """A pack being filled: its buffer, the blobs placed in it, how many of them are still
    being sealed, and whether it takes no more blobs."""

    __slots__ = ("blobs", "buf", "closed", "sealing", "used")

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.used = 0
        self.blobs: list[PackedBlob] = []
        self.sealing = 0
        self.closed = False


class PackWriter:
    """Accumulates blobs of one type and writes a pack file whenever it is full.

    ``on_saved(pack_id, blobs)`` is called after each pack is durably stored (on a remote
    store from an upload thread, so it must be thread-safe). :meth:`add` is thread-safe; call
    :meth:`flush` once no :meth:`add` is running: when it returns, every pack is stored.
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
        # A full pack plus the largest chunk (8 MiB) usually fits; bigger blobs get their own.
        self._capacity = target_size + 9 * 1024 * 1024
        self._pack: _Pack | None = None
        self._spares: list[mmap.mmap] = []
        self._live = 0  # buffers mapped and not yet closed, spares included
        # Remote stores: packs upload on threads of their own, more buffers (module doc).
        self._remote = not is_strongly_consistent(storage)
        self._max_live = (max(_MAX_LIVE, min(_REMOTE_LIVE, io_workers(storage) + 1))
                          if self._remote else _MAX_LIVE)
        self._uploading = 0  # packs handed to upload threads and not yet finished
        self._pending: set[bytes] = set()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # a buffer became free
        self._error: BaseException | None = None
        # zstd contexts are large: share a few instead of one per worker thread.
        self._zstd: queue.SimpleQueue[zstandard.ZstdCompressor] = queue.SimpleQueue()

    def is_pending(self, blob_id: bytes) -> bool:
        """Return whether the blob is queued in an unfinished pack."""
        return blob_id in self._pending

    def _payload(self, plaintext: bytes | memoryview) -> tuple[bytes | memoryview, int]:
        if not (self._compress and len(plaintext)):
            return plaintext, 0
        try:
            comp = self._zstd.get_nowait()
        except queue.Empty:
            comp = new_compressor()
        try:
            return blob_payload(comp, plaintext, self._type)
        finally:
            self._zstd.put(comp)

    def add(self, blob_id: bytes, plaintext: bytes | memoryview) -> int:
        """Seal and append one blob unless it is already queued; return the bytes it adds to
        the pack. Raise the storage error of a pack this call stores, or the first error
        this writer had (on a remote store a pack's upload error is raised by a later call,
        at the latest by :meth:`flush`)."""
        payload, ulen = self._payload(plaintext)
        return self._append(blob_id, len(payload) + EXTENSION, ulen,
                            lambda out: self._key.seal_into(payload, out))

    def add_sealed(self, blob_id: bytes, sealed: bytes | memoryview,
                   uncompressed_length: int) -> int:
        """Append a blob sealed elsewhere (``IV ‖ CT ‖ MAC`` of its payload, made with this
        writer's key from :func:`blob_payload`) unless it is already queued; return the
        bytes it adds to the pack. Raise as :meth:`add` does."""

        def copy(out: memoryview) -> None:
            out[: len(sealed)] = sealed

        return self._append(blob_id, len(sealed), uncompressed_length, copy)

    def _append(self, blob_id: bytes, size: int, ulen: int,
                fill: Callable[[memoryview], object]) -> int:
        """Reserve ``size`` bytes for the blob in the open pack (under the lock), let ``fill``
        write them (without it), and store the packs this closes. Return ``size``, or 0 if
        the blob is already queued."""
        while True:
            full: list[_Pack] = []
            with self._lock:
                if self._error is not None:
                    raise self._error
                if blob_id in self._pending:
                    return 0
                pack = self._room_for(size, full)
                if pack is not None and blob_id in self._pending:
                    return 0  # queued by another thread while this one waited for a buffer
                if pack is not None:
                    offset = pack.used
                    pack.used += size
                    pack.blobs.append(PackedBlob(self._type, blob_id, offset, size, ulen))
                    pack.sealing += 1
                    self._pending.add(blob_id)
                    if pack.used >= self._target:
                        self._close(pack, full)
            try:
                for other in full:  # packs this call closed that nobody is sealing into
                    self._store(other)
            except BaseException as exc:
                self._fail(exc)
                raise
            if pack is not None:
                break
        try:
            with memoryview(pack.buf) as view, view[offset : offset + size + _SLACK] as out:
                fill(out)
            with self._lock:
                pack.sealing -= 1
                last = pack.closed and pack.sealing == 0
            if last:
                self._store(pack)
        except BaseException as exc:  # the writer is unusable now: later calls raise it
            self._fail(exc)
            raise
        return size

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._error = self._error or exc
            self._room.notify_all()  # threads waiting for a buffer raise it too

    def _room_for(self, size: int, full: list[_Pack]) -> _Pack | None:
        """Return the pack to place a blob of ``size`` bytes in, closing the current one if
        the blob does not fit, and waiting for a buffer if a new pack needs one (under the
        lock). Return None if this closed a pack that the caller must write first: a thread
        never waits for a buffer while it holds one that only it will write."""
        while True:
            pack = self._pack
            if pack is not None and (
                pack.used + size + _SLACK + _header_max(len(pack.blobs) + 1) > len(pack.buf)
            ):
                self._close(pack, full)
                pack = None
            if pack is not None:
                return pack
            if full:
                return None
            buf = self._take_buffer(size + _SLACK + _header_max(1))
            if buf is not None:
                pack = self._pack = _Pack(buf)
                return pack
            # Every buffer is being filled or written: wait for one, then look again
            # (another thread may have opened a pack meanwhile).
            self._room.wait()
            if self._error is not None:
                raise self._error

    def _take_buffer(self, need: int) -> mmap.mmap | None:
        """Return a buffer of at least ``need`` bytes: a spare, or a new one if fewer than
        the writer's limit (module doc) are in use; None if the caller must wait. Under the
        lock."""
        if self._spares:
            buf = self._spares.pop()
            if len(buf) >= need:
                return buf
            buf.close()
            self._live -= 1
        if self._live < self._max_live or need > self._capacity:
            self._live += 1  # a blob larger than a pack buffer gets its own, at once
            return mmap.mmap(-1, max(self._capacity, need))
        return None

    def _close(self, pack: _Pack, full: list[_Pack]) -> None:
        """Take no more blobs into ``pack``; if none is being sealed, add it to ``full`` for
        the caller to write (under the lock)."""
        pack.closed = True
        if self._pack is pack:
            self._pack = None
        if pack.sealing == 0:
            full.append(pack)

    def _store(self, pack: _Pack) -> None:
        """Write a closed pack that nobody seals into any more: here on a local store; on a
        remote one, on an upload thread, whose error the writer keeps (:meth:`_fail`)."""
        if not self._remote:
            self._write(pack)
            return
        with self._lock:
            self._uploading += 1
        try:
            # A thread per pack (16 MiB of upload each) rather than a pool: nothing to shut
            # down, and the buffer limit already bounds how many run at once.
            threading.Thread(target=self._upload, args=(pack,), name="pack-upload").start()
        except BaseException:
            with self._lock:
                self._uploading -= 1
                self._room.notify_all()
            raise

    def _upload(self, pack: _Pack) -> None:
        try:
            self._write(pack)
        except BaseException as exc:  # add() and flush() raise it; this thread just ends
            self._fail(exc)
        finally:
            with self._lock:
                self._uploading -= 1
                self._room.notify_all()

    def _write(self, pack: _Pack) -> None:
        try:
            header = self._key.seal(encode_header(pack.blobs))
            end = pack.used + len(header) + 4
            with memoryview(pack.buf) as view, view[:end] as data:
                view[pack.used : end - 4] = header
                view[end - 4 : end] = struct.pack("<I", len(header))
                pack_id = hashlib.sha256(data).digest()
                self._storage.save(Handle(FileType.DATA, pack_id.hex()), data)
            self._on_saved(pack_id, pack.blobs)
        except BaseException:
            with self._lock:
                # The error's traceback may still hold views of the buffer (a backend's frame
                # that was writing it); close() then raises BufferError, which must not hide
                # the error itself. The buffer is freed when those views are.
                with contextlib.suppress(BufferError):
                    pack.buf.close()
                self._live -= 1
                self._room.notify_all()
            raise
        # A pack's last blob may reach past the target size (up to a whole chunk); give those
        # pages back, so a spare keeps about one target's worth resident.
        keep = -(-self._target // mmap.PAGESIZE) * mmap.PAGESIZE
        reuse = len(pack.buf) == self._capacity
        if reuse and end > keep and hasattr(mmap, "MADV_DONTNEED"):
            pack.buf.madvise(mmap.MADV_DONTNEED, keep, len(pack.buf) - keep)
        with self._lock:
            for b in pack.blobs:
                self._pending.discard(b.id)
            self._room.notify_all()
            if reuse and len(self._spares) < _SPARES:
                self._spares.append(pack.buf)
                return
            pack.buf.close()
            self._live -= 1

    def start_flush(self) -> None:
        """Close the unfinished pack, if it holds any blob, and store it: here on a local
        store, on an upload thread on a remote one (so the flushes of several writers can
        upload together; :meth:`flush` then waits). Call once no :meth:`add` is running."""
        full: list[_Pack] = []
        with self._lock:
            pack = self._pack
            if self._error is None and pack is not None and pack.blobs:
                self._close(pack, full)
        try:
            for p in full:
                self._store(p)
        except BaseException as exc:
            self._fail(exc)
            raise

    def flush(self) -> None:
        """Write the unfinished pack, if it holds any blob (:meth:`start_flush`), and wait
        until every pack handed to an upload thread is stored. Raise the first error this
        writer had (after the uploads still running have ended)."""
        self.start_flush()
        with self._lock:
            while self._uploading:
                self._room.wait()
            if self._error is not None:
                raise self._error
