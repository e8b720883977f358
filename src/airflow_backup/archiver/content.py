"""Read, chunk, hash and store file contents on a pool of worker threads.

Reading, chunking (FastCDC), SHA-256 and zstd release the GIL (the ``cryptography``
package's AES and Poly1305 do not), so files are processed concurrently by ``workers``
threads. Each file is read in large blocks and cut
with ``cut_buf``; the last, unfinished chunk of a block is carried into the next one, so chunk
boundaries do not depend on the block size. Small files (one chunk) take a fast path: one
``read``, no chunker. At most ``max_inflight`` files are queued, which bounds memory.

Holes of sparse files (found with ``SEEK_HOLE``/``SEEK_DATA`` where the file system has them)
are not read: their zeros are written into the block instead, and a run of chunks lying wholly
inside a hole is not cut or hashed at all. The chunker decides a cut from at most ``MAX_SIZE``
bytes following the chunk's start, so every chunk starting ``MAX_SIZE`` or more before a hole's
end is the same all-zero chunk, whose length and id are worked out once. The chunks, and so the
content blob ids, are exactly those of reading the zeros.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import queue
import stat as st
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from airflow_backup.archiver.chunker import MAX_SIZE, MIN_SIZE, Chunker
from airflow_backup.archiver.forked import ForkedWorker, WorkerLost, fork_workers, forking_allowed
from airflow_backup.archiver.reading import open_source, read_small, read_small_files
from airflow_backup.archiver.sealer import Sealed, small_file_sealer
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import io_workers, small_files_apart

__all__ = ["ContentResult", "ContentSaver", "SmallFile"]

_BATCH_FILES = 64
_BATCH_BYTES = 4 * 1024 * 1024
_SEALERS = 1  # forked processes sealing small files, where forking is allowed
_RELEASE_AFTER_BATCHES = 16
_BLOCK = 12 * 1024 * 1024  # > MAX_SIZE (8 MiB), so every block holds a complete chunk


@dataclass(slots=True)
class ContentResult:
    """A saved file: its blob ids, size, and what it added to the repository."""

    content: list[bytes] = field(default_factory=list)
    size: int = 0
    new_blobs: int = 0
    data_added: int = 0
    data_added_packed: int = 0

    def append(self, blob_id: bytes, size: int, packed: int) -> None:
        """Record the file's next chunk: its id, its size, and the bytes storing it added to
        packs (0 if the repository had it already)."""
        if packed:
            self.new_blobs += 1
            self.data_added += size
            self.data_added_packed += packed
        self.content.append(blob_id)
        self.size += size


class SmallFile:
    """A small file queued with :meth:`ContentSaver.submit_small`, done once a worker has
    set its ``outcome``: the ContentResult, or the exception that stopped it.

    Much lighter than a Future (no Condition, no lock per file): a worker sets the outcomes
    of a whole batch, then sets the batch's one Event. With a Future per small file, the
    Futures were a large share of the time the GIL was held.
    """

    __slots__ = ("_batch", "outcome", "path", "size")

    def __init__(self, path: bytes, size: int, batch: threading.Event) -> None:
        self.path = path
        self.size = size
        self.outcome: ContentResult | BaseException | None = None
        self._batch = batch

    def done(self) -> bool:
        """Return whether the outcome is set."""
        return self.outcome is not None

    def result(self) -> ContentResult:
        """Wait for the file's batch (hand it over with :meth:`ContentSaver.flush` first);
        return the result or raise what stopped the file (OSError if it could not be read).
        """
        if self.outcome is None:
            self._batch.wait()
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome


class ContentSaver:
    """Saves file contents concurrently; use as a context manager to join the workers."""

    def __init__(self, repo: Repository, chunker: Chunker, workers: int | None = None,
                 max_inflight: int = 64) -> None:
        self.repo = repo
        self.chunker = chunker
        # The workers read the files and upload the packs they fill.
        self.workers = workers or io_workers(repo.storage)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="content")
        # Small files in a thread of their own (see small_files_apart): faster with a warm
        # cache; with a cold one their disk waits overlap the large files' work (rather than
        # letting only ``workers`` files or batches be in flight), for a somewhat higher
        # peak RSS.
        self._small_pool = (ThreadPoolExecutor(1, thread_name_prefix="content-small")
                            if small_files_apart(repo.storage, self.workers) else self._pool)
        self._sealers: queue.SimpleQueue[ForkedWorker] = queue.SimpleQueue()
        self._forked: list[ForkedWorker] = []
        if self._small_pool is not self._pool and forking_allowed():
            # Better still: seal small files in a forked process, where the GIL does not
            # serialise them with everything else; the small-file thread hands it batches and
            # packs what comes back. A second process (see _SEALERS) is faster still, but
            # takes the peak memory of all processes above restic's.
            self._forked = fork_workers(_SEALERS, small_file_sealer(
                repo.key, repo.version >= 2 and repo.compress_data))
            if self._forked:
                self._small_pool.shutdown()
                self._small_pool = ThreadPoolExecutor(len(self._forked),
                                                      thread_name_prefix="content-small")
                for worker in self._forked:
                    self._sealers.put(worker)
        self._slots = threading.BoundedSemaphore(max_inflight)
        # Large files hold a block buffer each; two at a time keep the disk and both cores busy.
        self._large = threading.BoundedSemaphore(max(1, min(2, self.workers)))
        self._batch: list[SmallFile] = []
        self._batch_done = threading.Event()
        self._batch_bytes = 0
        self._blocks: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._blocks_lock = threading.Lock()
        self._small_streak = 0  # small-file batches saved since the last large file
        self._zero_chunk: tuple[int, bytes] | None = None  # see _zero_chunk_id

    def __enter__(self) -> ContentSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.flush()
        self._small_pool.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for worker in self._forked:
            worker.close()

    def submit_small(self, path: bytes, expected_size: int) -> SmallFile:
        """Queue a file smaller than one chunk. Small files travel to the workers in batches,
        which keeps per-file overhead low; call :meth:`flush` before waiting on one."""
        item = SmallFile(path, expected_size, self._batch_done)
        self._batch.append(item)
        self._batch_bytes += expected_size
        if len(self._batch) >= _BATCH_FILES or self._batch_bytes >= _BATCH_BYTES:
            self.flush()
        return item

    def flush(self) -> None:
        """Hand the pending batch of small files to a worker."""
        if not self._batch:
            return
        batch, done = self._batch, self._batch_done
        self._batch, self._batch_done, self._batch_bytes = [], threading.Event(), 0
        self._slots.acquire()
        try:
            fut = self._small_pool.submit(self._save_batch, batch, done)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _: self._slots.release())

    def _save_batch(self, batch: list[SmallFile], done: threading.Event) -> None:
        try:
            if not self._seal_elsewhere(batch):
                self._save_here(batch)
        finally:
            for item in batch:  # nobody may wait forever, whatever happened above
                if item.outcome is None:
                    item.outcome = RuntimeError("the batch of small files was interrupted")
            done.set()
        with self._blocks_lock:
            self._small_streak += 1
            idle = self._small_streak == _RELEASE_AFTER_BATCHES
        if idle:
            # A long run of small files: give the idle block buffers back to the system
            # rather than carry 2 × 12 MiB through it.
            while True:
                try:
                    self._blocks.get_nowait().close()
                except queue.Empty:
                    break

    def _seal_elsewhere(self, batch: list[SmallFile]) -> bool:
        """Have a forked worker read and seal the batch, then pack what it returns. Return
        False (having done nothing) if there is no worker or it was lost."""
        try:
            worker = self._sealers.get_nowait()
        except queue.Empty:
            return False
        try:
            reply = worker.call([(item.path, item.size) for item in batch])
        except WorkerLost:
            worker.close()  # not put back: the batch and later ones are done here
            return False
        self._sealers.put(worker)
        for item, got in zip(batch, reply, strict=True):
            try:
                if isinstance(got, OSError):
                    raise got
                if got is None:  # it grew past one chunk: read and chunk it here
                    item.outcome = self._save_file(item.path, item.size)
                    continue
                result = ContentResult()
                if isinstance(got, Sealed):
                    result.append(got.blob_id, got.size, self.repo.save_sealed_blob(
                        BlobType.DATA, got.blob_id, got.sealed, got.uncompressed_length))
                item.outcome = result
            except BaseException as exc:  # delivered to whoever waits on this file
                item.outcome = exc
        return True

    def _save_here(self, batch: list[SmallFile]) -> None:
        contents = read_small_files([(item.path, item.size) for item in batch])
        for item, data in zip(batch, contents, strict=True):
            try:
                if isinstance(data, OSError):
                    raise data
                if len(data) >= MIN_SIZE:  # it grew past one chunk: chunk it
                    item.outcome = self._save_file(item.path, item.size)
                    continue
                result = ContentResult()
                if data:
                    self._save_chunk(data, result)
                item.outcome = result
            except BaseException as exc:  # delivered to whoever waits on this file
                item.outcome = exc

    def submit_file(self, path: bytes, expected_size: int) -> Future[ContentResult]:
        """Queue a regular file; the future raises OSError if it cannot be read."""
        self._slots.acquire()
        try:
            fut = self._pool.submit(self._save_file, path, expected_size)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _: self._slots.release())
        return fut

    def save_stream(self, stream: BinaryIO) -> ContentResult:
        """Save a stream in the calling thread (stdin, command output)."""
        result = ContentResult()
        readinto = getattr(stream, "readinto", None)
        if readinto is None:
            readinto = _ReadToReadinto(stream.read).readinto
        self._save_blocks(readinto, result)
        return result

    # ---- workers -------------------------------------------------------------------------

    def _save_file(self, path: bytes, expected_size: int) -> ContentResult:
        fd = open_source(path)
        try:
            return self._save_open(fd, path, expected_size)
        finally:
            os.close(fd)

    def _save_open(self, fd: int, path: bytes, expected_size: int) -> ContentResult:
        """Save the content of ``path``, open as ``fd`` (which the caller closes)."""
        if not st.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{os.fsdecode(path)} changed type while being read")
        result = ContentResult()
        if expected_size < MIN_SIZE:
            data = read_small(fd, expected_size)
            if len(data) < MIN_SIZE:
                if data:
                    self._save_chunk(data, result)
                return result
            # The file grew past one chunk while we looked: chunk it normally.
            self._save_blocks(_Reader(fd, data).readinto, result)
            return result
        with self._large:
            # At most two large files at a time, so at most two block buffers, reused:
            # that spares the kernel mapping, faulting in and zeroing a fresh buffer per
            # file. An anonymous map is not zero-filled up front, so only the pages that
            # files of this size have used become resident.
            with self._blocks_lock:
                self._small_streak = 0
            try:
                buf = self._blocks.get_nowait()
            except queue.Empty:
                buf = mmap.mmap(-1, _BLOCK)
            try:
                sparse = _SparseReader(fd)
                self._save_blocks(sparse.readinto, result, buf=buf, sparse=sparse)
            finally:
                self._blocks.put(buf)
        return result

    def _save_blocks(self, readinto: Callable[[memoryview], int], result: ContentResult,
                     size_hint: int = _BLOCK, buf: bytearray | mmap.mmap | None = None,
                     sparse: _SparseReader | None = None) -> None:
        """Chunk a stream through one buffer: read into it, save the complete chunks, move
        the unfinished tail to the front, repeat. No per-block copies are made. Without a
        ``buf`` of a full block, a file known to be small gets a buffer of its size, grown to
        the full block only if it grows.

        With ``sparse`` (whose ``readinto`` must be ``readinto``), chunks lying wholly inside
        a hole are saved as the known all-zero chunk without being cut, hashed or read (module
        doc); the chunks saved are the same as without it."""
        if buf is None:
            buf = bytearray(min(_BLOCK, size_hint + 4096))
        filled = 0
        eof = False
        while not eof:
            if sparse is not None:
                # buf[:filled] is the file from ``start``: if a whole chunk's window from
                # there lies in the hole being read, the tail is zeros and so are the chunks
                # that follow, up to MAX_SIZE before the hole's end.
                start = sparse.pos - filled
                zeros = sparse.zeros_from(start)
                if zeros >= MAX_SIZE:
                    length, blob_id = self._zero_chunk_id()
                    count = (zeros - MAX_SIZE) // length + 1
                    for _ in range(count):
                        _, added = self.repo.save_blob(BlobType.DATA, _ZEROS[:length], blob_id)
                        result.append(blob_id, length, added)
                    sparse.pos = start + count * length  # the rest of the hole: read as zeros
                    filled = 0
            while True:
                with memoryview(buf) as whole:
                    while filled < len(buf):
                        n = readinto(whole[filled:])
                        if not n:
                            eof = True
                            break
                        filled += n
                if eof or len(buf) >= _BLOCK:
                    break
                assert isinstance(buf, bytearray)  # a given buffer is a full block
                buf.extend(bytes(_BLOCK - len(buf)))  # larger than it said: use a full block
            if not filled:
                return
            with memoryview(buf) as whole, whole[:filled] as view:
                chunks = list(self.chunker.cut(view))
                # Unless at EOF, the last chunk ended only because the buffer did: cut it
                # again together with what follows. The buffer is longer than MAX_SIZE, so at
                # least one chunk before it is complete.
                if not eof:
                    chunks.pop()
                for start, length in chunks:
                    with view[start : start + length] as chunk:
                        self._save_chunk(chunk, result)
            done = chunks[-1][0] + chunks[-1][1] if chunks else 0
            buf[: filled - done] = buf[done:filled]
            filled -= done

    def _zero_chunk_id(self) -> tuple[int, bytes]:
        """Return the length and blob id of the chunk the chunker cuts first from a run of at
        least MAX_SIZE zero bytes (the same wherever the run is: see the module doc)."""
        zero = self._zero_chunk
        if zero is None:
            # Cut from more than MAX_SIZE zeros, as inside a hole: the first chunk is then
            # decided by MAX_SIZE zeros alone, never by the buffer's end.
            _, length = next(iter(self.chunker.cut(_ZEROS[: MAX_SIZE + 1])))
            zero = self._zero_chunk = (length, hashlib.sha256(_ZEROS[:length]).digest())
        return zero

    def _save_chunk(self, chunk: bytes | memoryview, result: ContentResult) -> None:
        blob_id = hashlib.sha256(chunk).digest()
        _, added = self.repo.save_blob(BlobType.DATA, chunk, blob_id)
        result.append(blob_id, len(chunk), added)


class _SparseReader:
    """Reads a regular file from offset 0 with ``pread``, writing zeros for its holes
    instead of reading them (``SEEK_HOLE``/``SEEK_DATA``; where the file system or the
    platform does not have them, every byte is read). ``pos`` is the offset of the next byte
    ``readinto`` returns; the content saver moves it forward over what it skipped.

    A file that changes while it is read gives a mix of its old and new bytes, as reading
    does; a hole is taken to be as long as it was when found.
    """

    __slots__ = ("_end", "_fd", "_hole", "_start", "pos")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.pos = 0
        # The region being read, [_start, _end): a hole, or data (_end None: up to EOF).
        self._start = 0
        self._end: int | None = 0
        self._hole = False

    def zeros_from(self, offset: int) -> int:
        """Return how many bytes from ``offset`` on (at most ``pos``) are known to be zeros:
        those of the current hole, if it began at or before ``offset``; else 0."""
        if not self._hole or self._end is None or not self._start <= offset <= self.pos:
            return 0
        return self._end - offset

    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view`` with the file's next bytes; return how many (0 at
        EOF)."""
        if self._end is not None and not self._start <= self.pos < self._end:
            self._locate()
        end = self._end
        n = len(view) if end is None else min(len(view), end - self.pos)
        if self._hole:
            view[:n] = _ZEROS[:n]
        else:
            n = os.preadv(self._fd, [view[:n]], self.pos)
        self.pos += n
        return n

    def _locate(self) -> None:
        """Find the region starting at ``pos``."""
        fd, pos = self._fd, self.pos
        self._start, self._end, self._hole = pos, None, False  # unknown: data to EOF
        try:
            data_end = os.lseek(fd, pos, os.SEEK_HOLE)
            if data_end > pos:
                self._end = data_end
                return
            try:
                hole_end = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                hole_end = os.fstat(fd).st_size  # a hole up to EOF
        except (OSError, AttributeError):
            # ENXIO: at or past EOF (reading finds it); EINVAL and others: no hole support
            # here, so the file is read; AttributeError: no SEEK_HOLE on this platform.
            return
        if hole_end > pos:
            self._end, self._hole = hole_end, True


class _Reader:
    """Reads from ``fd`` after first returning bytes already read."""

    def __init__(self, fd: int, head: bytes) -> None:
        self._fd = fd
        self._head = memoryview(head)

    def readinto(self, view: memoryview) -> int:
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return os.readv(self._fd, [view])


class _ReadToReadinto:
    """Adapts a ``read(n)`` stream to ``readinto``."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def readinto(self, view: memoryview) -> int:
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)


assert _BLOCK > MAX_SIZE

#: Zero bytes to copy holes from and to save the all-zero chunk from: a private anonymous map
#: that is never written, so its pages are all the kernel's zero page and take no memory (a
#: shared one, mmap's default, would fill with pages of its own as it is read).
_ZEROS = memoryview(mmap.mmap(-1, max(_BLOCK, MAX_SIZE + 1), flags=mmap.MAP_PRIVATE,
                              prot=mmap.PROT_READ))
