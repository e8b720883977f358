"""Fill restored files from packs: each pack is read once, its blobs go to every file using them.

A pack's blobs may belong to many files and a file's blobs to many packs, so the restorer
first plans (blob → file offsets, grouped by pack), creates every file at its final size
(sparse), then reads the packs in parallel. Neighbouring blobs of a pack are fetched with one
ranged read. Each blob is verified (MAC, then SHA-256) before its bytes are written; with
``sparse``, all-zero blobs (and a blob's leading zeros) are not written at all, which leaves
holes.

Two ways to run, chosen by the store's declared capabilities:

- Local storage (and memory): worker threads each take a pack, read it in ranges of at most
  ``_MAX_READ`` into a buffer the thread reuses, decode and write each range before reading
  the next. Memory: one read range (at most 4 MiB), one decrypted and one decompressed blob
  per worker.
- Object stores (a store that does not declare ``small_files_apart``: its transfers wait on
  the network): a download stage of ``workers`` threads keeps that many ranged reads in
  flight, each covering a part of a pack's needed span (about equal parts of at most
  ``_MAX_REMOTE_READ``), streamed (:func:`~airflow_backup.storage.base.load_chunks`): as
  soon as the bytes that have arrived complete some blobs, those go to a pool of
  decode/write threads (one per core, at least ``_MIN_DECODERS``) while the rest of the
  read is still downloading. Memory: the
  reads in flight, and those whose blobs are not all decoded and written, are at most
  ``workers × _REMOTE_BUDGET_PER_WORKER`` bytes (64 MiB at the 8 workers of an object
  store), each held from its request until its last blob is written; downloads wait for
  room. Plus one decrypted and one decompressed blob per decode thread.

Every pack read passes read-ahead (:func:`~airflow_backup.storage.readahead.planned_reads`):
the reads already cover exactly the needed spans, a window would only add bytes.

Salvage: a missing pack or a damaged blob fails only the files that need it (each keeps the
first reason); they are removed, every other file is completed. Any other error (storage
unreachable after its retries, …) stops the restore.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from airflow_backup.errors import IntegrityError, NotFound
from airflow_backup.repository.packs import BlobType, PackedBlob
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.scratch import READ, scratch
from airflow_backup.storage.base import (
    FileType,
    Handle,
    Storage,
    close_chunks,
    io_workers,
    load_chunks,
    load_into,
    small_files_apart,
)
from airflow_backup.storage.readahead import planned_reads

__all__ = ["FileJob", "PackFiller"]

_MAX_GAP = 1 << 20  # read through gaps up to this size rather than issuing another request
_MAX_READ = 4 << 20  # but keep each read (and so each worker's memory) to about this size
# Below this, a blob's work is mostly per-file Python and syscalls, bound by the GIL (small
# files are single blobs below the chunker's 512 KiB minimum; chunks of larger files are at
# least that, but for a file's last one).
_SMALL_BLOB = 128 << 10
# Object stores: a pack's needed span is read in about equal parts of at most this size (a
# default 16-24 MiB pack in 2 or 3 requests), each streamed. Before reads were streamed, no
# blob was decoded before its whole range had arrived, so whole-pack reads (32 MiB) were
# 1-1.8 s slower in s3_bench; streamed, 16 MiB was no faster than 8 in an interleaved A/B
# (medians within the noise of a shared machine), and 8 keeps every download thread busy
# within the budget below.
_MAX_REMOTE_READ = 8 << 20
# ... and the pack data held at once (in flight or waiting to be written) per download
# thread: one read each, so every thread can have a request out.
_REMOTE_BUDGET_PER_WORKER = 8 << 20
# Decode/write threads on object stores: at least this many, see _run_pipelined.
_MIN_DECODERS = 4


@dataclass(slots=True)
class FileJob:
    """One file to fill: where it goes, its final size and how many blob writes it still
    waits for. The file is created by the first write (see :meth:`PackFiller._open`)."""

    dest: bytes
    size: int = 0
    remaining: int = 0
    failed: bool = False
    created: bool = False
    lock: threading.Lock | None = None
    zero_tail: bool = False  # set when its last blob is all zeros (needs an explicit size)
    reason: str = ""  # why it failed (the first failure)
    lost: bool = False  # failed because a blob it needs is missing or damaged


@dataclass(slots=True)
class _Target:
    job: FileJob
    offset: int


@dataclass(slots=True)
class _PackWork:
    blobs: dict[bytes, tuple[PackedBlob, list[_Target]]] = field(default_factory=dict)


_Slot = tuple[PackedBlob, list[_Target]]


@dataclass(slots=True)
class _Read:
    """One ranged read of a pack on an object store: the blobs it covers, by offset."""

    pack: str
    blobs: list[tuple[PackedBlob, list[_Target]]]

    @property
    def length(self) -> int:
        first, last = self.blobs[0][0], self.blobs[-1][0]
        return last.offset + last.length - first.offset


def _plan_reads(pack: str, work: _PackWork, max_read: int) -> list[_Read]:
    """Return the reads that cover ``work``'s blobs in one pack: blobs closer than
    ``_MAX_GAP`` share a read (the gap is read through); a span longer than ``max_read`` is
    cut into about equal reads of at most ``max_read`` (a lone blob longer than that is one
    read)."""
    blobs = sorted(work.blobs.values(), key=lambda s: s[0].offset)
    spans: list[list[tuple[PackedBlob, list[_Target]]]] = []
    for slot in blobs:
        if spans:
            prev = spans[-1][-1][0]
            if slot[0].offset - (prev.offset + prev.length) <= _MAX_GAP:
                spans[-1].append(slot)
                continue
        spans.append([slot])
    reads: list[_Read] = []
    for span in spans:
        start = span[0][0].offset
        total = span[-1][0].offset + span[-1][0].length - start
        parts = -(-total // max_read)
        target = -(-total // parts)  # close a read once it reaches its share
        part: list[tuple[PackedBlob, list[_Target]]] = []
        for slot in span:
            if part:
                begin = part[0][0].offset
                end = part[-1][0].offset + part[-1][0].length
                if (end - begin >= target
                        or slot[0].offset + slot[0].length - begin > max_read):
                    reads.append(_Read(pack, part))
                    part = []
            part.append(slot)
        reads.append(_Read(pack, part))
    return reads


class _Held:
    """Budget bytes held for one read, shared by the pieces of it being decoded: given
    back to the budget when the last holder releases them (the read's buffer is alive
    until then)."""

    def __init__(self, budget: _Budget, n: int) -> None:
        self._budget = budget
        self._n = n
        self._holders = 1  # the download
        self._lock = threading.Lock()

    def share(self) -> _Held:
        """Add a holder (a piece handed to a decoder); return self."""
        with self._lock:
            self._holders += 1
        return self

    def release(self) -> None:
        """Drop one holder; the last one gives the bytes back."""
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self._budget.give(self._n)


class _Budget:
    """Bytes that may be held at once; :meth:`take` waits for room. A request larger than
    the whole budget waits for all of it (and so runs alone)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._free = limit
        self._cond = threading.Condition()

    def take(self, n: int) -> int:
        """Wait until ``n`` bytes (at most the limit) are free, take them and return how
        many were taken (what :meth:`give` must return)."""
        n = min(n, self._limit)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= n)
            self._free -= n
        return n

    def give(self, n: int) -> None:
        """Return ``n`` bytes taken earlier."""
        with self._cond:
            self._free += n
            self._cond.notify_all()


def _network_bound(storage: Storage) -> bool:
    """Return whether reads from ``storage`` wait on the network: what a store declares by
    not keeping small files apart (``Capabilities.remote()``: "their transfers wait on the
    network"). Capabilities have no latency flag of their own."""
    return not storage.capabilities.small_files_apart


def _split_small(work: _PackWork) -> tuple[_PackWork, _PackWork]:
    """Return the pack's work on blobs below ``_SMALL_BLOB`` and on the others."""
    small, large = _PackWork(), _PackWork()
    for blob_id, slot in work.blobs.items():
        (small if slot[0].plain_length < _SMALL_BLOB else large).blobs[blob_id] = slot
    return small, large


class PackFiller:
    """Collects (file, offset, blob) writes, then performs them pack by pack."""

    def __init__(self, repo: Repository, workers: int | None = None, *,
                 sparse: bool = False) -> None:
        """``sparse``: leave holes for all-zero blobs and for the zero bytes a blob starts
        with (restic's ``--sparse``); otherwise every byte is written, as restic does."""
        self.repo = repo
        self.sparse = sparse
        self.workers = workers or io_workers(repo.storage)
        self._packs: dict[bytes, _PackWork] = defaultdict(_PackWork)
        self.bytes_written = 0
        self._lock = threading.Lock()

    def add_file(self, job: FileJob, content: list[bytes]) -> None:
        """Plan the writes of one file. Raise IntegrityError, planning nothing, if a blob is
        not indexed."""
        entries = []
        for blob_id in content:
            entry = self.repo.index.lookup(BlobType.DATA, blob_id)
            if entry is None:
                raise IntegrityError(f"data blob {blob_id.hex()} is not in the index")
            entries.append(entry)
        offset = 0
        for blob_id, entry in zip(content, entries, strict=True):
            work = self._packs[entry.pack_id]
            slot = work.blobs.get(blob_id)
            if slot is None:
                slot = (entry.blob, [])
                work.blobs[blob_id] = slot
            slot[1].append(_Target(job, offset))
            job.remaining += 1
            offset += entry.blob.plain_length
        job.size = offset
        if job.remaining > 1:
            job.lock = threading.Lock()

    @staticmethod
    def create(job: FileJob) -> int:
        """Create ``job``'s file at its final size (so all-zero blobs stay holes) and return
        an open descriptor. O_EXCL and O_NOFOLLOW: never through a symlink, never twice."""
        fd = os.open(job.dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            # One blob that is not all zeros fills the file; otherwise size it now so that
            # skipped zero blobs are holes.
            if job.size and (job.remaining != 1 or job.zero_tail):
                os.ftruncate(fd, job.size)
        except OSError:
            os.close(fd)
            # O_EXCL made the file ours: an empty or short file must not stay behind.
            with contextlib.suppress(OSError):
                os.unlink(job.dest)
            raise
        job.created = True
        return fd

    def _open(self, job: FileJob) -> int:
        if job.created:
            return os.open(job.dest, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if job.lock is None:  # a single-blob file: only one writer ever
            return self.create(job)
        with job.lock:
            if job.created:
                return os.open(job.dest, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            return self.create(job)

    def run(self, on_file_done: Callable[[FileJob, int | None], None]) -> None:
        """Read every planned pack and write its blobs. ``on_file_done`` is called (from a
        worker thread) for each file whose last blob was written.

        A file whose write fails (an OSError: disk full, file too large…) or one of whose
        blobs is lost (its pack missing, the blob damaged) is marked ``failed``, with its
        ``reason``, and removed before ``on_file_done`` is called for it; the other files are
        completed. Any other error stops the work and is raised once the files that could not
        be completed are deleted, so no file with wrong content is left behind.
        """
        if _network_bound(self.repo.storage):
            self._run_pipelined(on_file_done)
            return
        packs = list(self._packs.items())
        errors: list[BaseException] = []
        stop = threading.Event()

        def work(item: tuple[bytes, _PackWork]) -> None:
            if stop.is_set():
                return
            try:
                with planned_reads():
                    self._fill_pack(item[0], item[1], on_file_done)
            except BaseException as exc:
                stop.set()
                with self._lock:
                    errors.append(exc)

        # Small files' blobs in a thread of their own (see small_files_apart): one thread
        # restores them faster and with less CPU than two. ``busy`` keeps the number working
        # at once to ``workers``. The split is by blob, not by pack: a backup packs small
        # files and chunks of large ones side by side, so most packs hold both.
        busy = threading.BoundedSemaphore(self.workers)

        def guarded(item: tuple[bytes, _PackWork]) -> None:
            with busy:
                work(item)

        small: list[tuple[bytes, _PackWork]] = []
        large: list[tuple[bytes, _PackWork]] = []
        if small_files_apart(self.repo.storage, self.workers):
            for pack_id, pack_work in packs:
                few, many = _split_small(pack_work)
                if few.blobs:
                    small.append((pack_id, few))
                if many.blobs:
                    large.append((pack_id, many))
        else:
            large = packs
        with ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="restore-small") as small_pool:
            done = [small_pool.submit(guarded, p) for p in small]
            done += [pool.submit(guarded, p) for p in large]
            for fut in done:
                fut.result()
        if errors:
            self._remove_incomplete()
            raise errors[0]

    def _run_pipelined(self, on_file_done: Callable[[FileJob, int | None], None]) -> None:
        """:meth:`run` on an object store: ``workers`` download threads keep that many ranged
        reads in flight (parts of packs' needed spans), within the memory budget; a pool of
        decode/write threads works on what has arrived meanwhile. Same contract as
        :meth:`run`."""
        budget_limit = self.workers * _REMOTE_BUDGET_PER_WORKER
        max_read = min(_MAX_REMOTE_READ, budget_limit)
        reads = [r for pack_id, work in self._packs.items()
                 for r in _plan_reads(pack_id.hex(), work, max_read)]
        budget = _Budget(budget_limit)
        errors: list[BaseException] = []
        stop = threading.Event()
        missing: set[str] = set()
        # Decoding and writing release the GIL for the bulk of their work (AES, zstd,
        # SHA-256, pwrite), and file creation and writes may block in the kernel (ext4
        # made creating a small file take ~1 ms instead of 0.02 while large writes were
        # being flushed): one thread per core, at least 4, keeps some decoding while
        # others wait (s3_bench on 2 cores: 4 shortened the restore's tail after its last
        # download, 2 left a decode backlog of up to 2 s on a busy machine).
        decoders = min(self.workers, max(_MIN_DECODERS, os.cpu_count() or 2))

        def failed(exc: BaseException) -> None:
            stop.set()
            with self._lock:
                errors.append(exc)

        def decode(read: _Read, view: memoryview, held: _Held) -> None:
            try:
                if not stop.is_set():
                    self._decode_read(read, view, on_file_done)
            except BaseException as exc:
                failed(exc)
            finally:
                held.release()

        def fetch(read: _Read, held: _Held) -> None:
            try:
                if stop.is_set():
                    return
                # A blob whose files have all failed meanwhile is not read at all.
                live = []
                for slot in read.blobs:
                    if all(t.job.failed for t in slot[1]):
                        self._fail(slot[1], "", on_file_done)
                    else:
                        live.append(slot)
                if not live:
                    return
                read = _Read(read.pack, live)
                if read.pack in missing:
                    lost = live
                else:
                    lost = self._stream_read(
                        read, stop,
                        lambda part, view: decode_pool.submit(decode, part, view, held.share()))
                if lost:
                    missing.add(read.pack)
                    for _, targets in lost:
                        self._fail(targets, f"its data is lost: pack {read.pack} is missing",
                                   on_file_done)
            except BaseException as exc:
                failed(exc)
            finally:
                held.release()

        fetched: list[Future[None]] = []
        # Leaving the block waits for the downloads first (the pool opened last), each of
        # which has handed its bytes on by then, and then for the last decode.
        with ThreadPoolExecutor(decoders, thread_name_prefix="restore") as decode_pool, \
                ThreadPoolExecutor(self.workers, thread_name_prefix="restore-get") as pool:
            try:
                for read in reads:
                    taken = budget.take(read.length)
                    if stop.is_set():
                        budget.give(taken)
                        break
                    fetched.append(pool.submit(fetch, read, _Held(budget, taken)))
            except BaseException as exc:  # an interrupt: let the threads wind down
                failed(exc)
        for fut in fetched:
            fut.result()  # (fetch catches everything: this only re-raises a pool failure)
        if errors:
            self._remove_incomplete()
            raise errors[0]

    def _stream_read(self, read: _Read, stop: threading.Event,
                     hand: Callable[[_Read, memoryview], object]) -> list[_Slot]:
        """Read ``read``'s span as it arrives (:func:`load_chunks`) into a buffer of its
        own; each time a chunk completes blobs, hand those blobs and their bytes to
        ``hand`` (to be decoded while the rest is still downloading). Return the blobs not
        handed over because the pack is missing (NotFound); any other storage error is
        raised. A chunk that does not arrive whole is never handed over (the storage layer
        raises or, retrying, resumes after the last whole chunk); a pack that ends early
        hands its last blobs over short, and their decoding names the truncated blob."""
        blobs = read.blobs
        start = blobs[0][0].offset
        buf = bytearray(read.length)
        view = memoryview(buf)
        got = 0  # bytes arrived
        given = 0  # blobs handed over

        def give(upto: int) -> None:
            nonlocal given
            rel = blobs[given][0].offset - start
            hand(_Read(read.pack, blobs[given:upto]), view[rel:got])
            given = upto

        chunks: Iterator[bytes] = iter(())
        try:
            with planned_reads():
                chunks = load_chunks(self.repo.storage, Handle(FileType.DATA, read.pack),
                                     start, read.length)
            for chunk in chunks:
                n = min(len(chunk), read.length - got)
                view[got : got + n] = chunk[:n]
                got += n
                done = given
                while done < len(blobs) and (
                        blobs[done][0].offset + blobs[done][0].length - start <= got):
                    done += 1
                if done > given:
                    give(done)
                if stop.is_set():
                    return []
        except NotFound:
            return blobs[given:]
        finally:
            close_chunks(chunks)
        if given < len(blobs):  # a short pack
            give(len(blobs))
        return []

    def _decode_read(self, read: _Read, view: memoryview,
                     on_file_done: Callable[[FileJob, int | None], None]) -> None:
        """Decode, verify and write every blob of ``read`` from its downloaded bytes."""
        first = read.blobs[0][0].offset
        for blob, targets in read.blobs:
            rel = blob.offset - first
            try:
                plain = self.repo.decode_blob_into(read.pack, blob,
                                                   view[rel : rel + blob.length])
            except IntegrityError as exc:
                self._fail(targets, f"its data is damaged: {exc}", on_file_done)
                continue
            self._write(plain, targets, on_file_done)

    @staticmethod
    def _discard(job: FileJob) -> None:
        """Remove ``job``'s file if this restore created it; never raise. Anything else at
        that path (a directory in the way, a file O_EXCL refused to replace) is not ours."""
        if job.created:
            job.created = False
            with contextlib.suppress(OSError):
                os.unlink(job.dest)

    def _remove_incomplete(self) -> None:
        # Runs while the pack's error is on its way out: a failure here must neither
        # replace that error nor stop the cleanup of the other files.
        for work in self._packs.values():
            for _, targets in work.blobs.values():
                for t in targets:
                    if t.job.remaining > 0 or t.job.failed:
                        self._discard(t.job)

    def _fill_pack(self, pack_id: bytes, work: _PackWork,
                   on_file_done: Callable[[FileJob, int | None], None]) -> None:
        pack = pack_id.hex()
        blobs = sorted(work.blobs.values(), key=lambda s: s[0].offset)
        start = 0
        while start < len(blobs):
            if all(t.job.failed for t in blobs[start][1]):  # nobody needs it any more
                self._fail(blobs[start][1], "", on_file_done)
                start += 1
                continue
            end = start + 1
            while end < len(blobs):
                prev, nxt = blobs[end - 1][0], blobs[end][0]
                if nxt.offset - (prev.offset + prev.length) > _MAX_GAP:
                    break
                if nxt.offset + nxt.length - blobs[start][0].offset > _MAX_READ:
                    break
                end += 1
            first, last = blobs[start][0], blobs[end - 1][0]
            length = last.offset + last.length - first.offset
            view = scratch(length, READ)[:length]
            try:
                n = load_into(self.repo.storage, Handle(FileType.DATA, pack), first.offset, view)
            except NotFound:
                for _, targets in blobs[start:]:
                    self._fail(targets, f"its data is lost: pack {pack} is missing",
                               on_file_done)
                return
            view = view[:n]  # a short pack: decode_blob_into names the truncated blob
            for blob, targets in blobs[start:end]:
                rel = blob.offset - first.offset
                try:
                    plain = self.repo.decode_blob_into(pack, blob, view[rel : rel + blob.length])
                except IntegrityError as exc:
                    self._fail(targets, f"its data is damaged: {exc}", on_file_done)
                    continue
                self._write(plain, targets, on_file_done)
            start = end

    def _fail(self, targets: list[_Target], reason: str,
              on_file_done: Callable[[FileJob, int | None], None]) -> None:
        """Count a blob that cannot be written as done for each of its files, which fail."""
        for t in targets:
            with self._lock:
                if reason and not t.job.reason:
                    t.job.reason = reason
                    t.job.lost = True
                t.job.failed = True
            self._done(t.job, None, False, 0, on_file_done)

    def _done(self, job: FileJob, fd: int | None, zero: bool, size: int,
              on_file_done: Callable[[FileJob, int | None], None]) -> None:
        """Count one of ``job``'s blobs as handled; the last one finishes the file."""
        with self._lock:
            job.remaining -= 1
            done = job.remaining == 0
            if not zero and not job.failed:
                self.bytes_written += size
        if done:
            if job.failed:  # a partly written file must not look restored
                self._discard(job)
            # Metadata goes through the open descriptor when there is one.
            on_file_done(job, fd)

    def _write(self, plain: bytes | memoryview, targets: list[_Target],
               on_file_done: Callable[[FileJob, int | None], None]) -> None:
        # All zeros (a hole)? The first and last bytes rule out nearly every blob cheaply.
        zero = self.sparse and (not plain or (plain[0] == 0 and plain[-1] == 0
                                              and bytes(plain).count(0) == len(plain)))
        skip = 0  # sparse: the zero bytes it starts with are left as a hole (restic's rule)
        if self.sparse and not zero and plain[0] == 0:
            skip = len(plain) - len(bytes(plain).lstrip(b"\0"))
        for t in targets:
            fd: int | None = None
            job = t.job
            if not job.failed and (not zero or not job.created):
                try:
                    if zero:
                        job.zero_tail = True
                    fd = self._open(job)
                    view = memoryview(plain)[skip:]
                    pos = t.offset + skip
                    while view and not zero:
                        n = os.pwrite(fd, view, pos)
                        view, pos = view[n:], pos + n
                except OSError as exc:
                    with self._lock:
                        if not job.failed:
                            job.reason = ("could not write the file: "
                                          f"{exc.strerror or exc}")
                        job.failed = True
            try:
                self._done(job, fd, zero, len(plain), on_file_done)
            finally:
                if fd is not None:
                    os.close(fd)
