"""PackWriter on remote stores: full packs upload on threads of their own, several at once,
with a bounded number of pack buffers; on local stores the filling thread writes them, as
before (issue 26)."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import zstandard

import airflow_backup.repository.packer as packer
from airflow_backup.errors import PermanentStorageError
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.packer import PackWriter
from airflow_backup.repository.packs import BlobType, PackedBlob, read_pack_header
from airflow_backup.storage.base import Capabilities, FileType, Handle
from airflow_backup.storage.memory import MemoryStorage
from support.pack_threads import add_from_threads, incompressible_blob


@pytest.fixture
def key() -> Key:
    return Key.random()


class _SlowRemote(MemoryStorage):
    """An object store: saves take a while (a PUT's round trips) and may fail from the
    n-th on. Records how many saves ran at once and in which threads."""

    capabilities = Capabilities.remote()

    def __init__(self, delay: float = 0.05, fail_from: int = 0) -> None:
        super().__init__()
        self.delay = delay
        self.fail_from = fail_from
        self.saves = 0
        self.running = 0
        self.most_at_once = 0
        self.threads: set[str] = set()
        self._count = threading.Lock()

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        with self._count:
            self.saves += 1
            n = self.saves
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.delay)
            if self.fail_from and n >= self.fail_from:
                raise PermanentStorageError(f"save {handle.name}: access denied")
            super().save(handle, data)
        finally:
            with self._count:
                self.running -= 1


class _SlowLocal(_SlowRemote):
    capabilities = Capabilities.local(load_into=False)


def _uploads_alive() -> list[threading.Thread]:
    """Return the upload threads still running a moment after their last notification."""
    running = [t for t in threading.enumerate() if t.name == "pack-upload"]
    for t in running:
        t.join(1)
    return [t for t in running if t.is_alive()]


def test_remote_packs_upload_several_at_once_with_bounded_buffers(key: Key) -> None:
    storage = _SlowRemote()
    saved: list[tuple[bytes, list[PackedBlob]]] = []
    lock = threading.Lock()

    def on_saved(pid: bytes, blobs: list[PackedBlob]) -> None:
        with lock:
            saved.append((pid, blobs))

    writer = PackWriter(storage, key, BlobType.DATA, on_saved, target_size=256 * 1024,
                        compress_data=False)
    peak = [0]
    real_take = writer._take_buffer

    def counting_take(need: int) -> object:
        buf = real_take(need)
        peak[0] = max(peak[0], writer._live)
        return buf

    writer._take_buffer = counting_take  # type: ignore[method-assign, assignment]
    assert add_from_threads(writer) == []
    writer.flush()
    # Every pack is stored once flush returns, none is left uploading, all are whole.
    assert not _uploads_alive()
    assert len(saved) >= 20 and storage.saves == len(saved)
    assert storage.threads == {"pack-upload"}  # not the threads that filled them
    assert 2 <= storage.most_at_once <= packer._REMOTE_LIVE
    assert peak[0] <= packer._REMOTE_LIVE and writer._live <= packer._REMOTE_LIVE
    seen = set()
    for pack_id, blobs in saved:
        pack = storage.load(Handle(FileType.DATA, pack_id.hex()))
        assert hashlib.sha256(pack).digest() == pack_id
        assert read_pack_header(pack, key, "pack") == blobs
        for b in blobs:
            number = next(i for i in range(240)
                          if hashlib.sha256(incompressible_blob(i)).digest() == b.id)
            assert key.open(pack[b.offset : b.offset + b.length]) == incompressible_blob(number)
            seen.add(b.id)
    assert seen == {hashlib.sha256(incompressible_blob(i)).digest() for i in range(240)}


def test_a_blob_stays_pending_until_its_pack_is_stored(key: Key) -> None:
    """While a pack uploads, its blobs are neither saved again nor reported stored."""
    storage = _SlowRemote(delay=0.3)
    saved: list[bytes] = []
    writer = PackWriter(storage, key, BlobType.TREE, lambda pid, bl: saved.append(pid))
    writer.add(b"\x01" * 32, b"tree one")
    writer.flush()
    assert len(saved) == 1
    writer.add(b"\x02" * 32, b"tree two")
    done = threading.Event()

    def flush() -> None:
        writer.flush()
        done.set()

    t = threading.Thread(target=flush)
    t.start()
    time.sleep(0.1)  # the upload is under way
    assert not done.is_set() and len(saved) == 1
    assert writer.is_pending(b"\x02" * 32)
    assert writer.add(b"\x02" * 32, b"tree two") == 0  # queued already: not added again
    t.join(10)
    assert done.is_set() and len(saved) == 2 and not writer.is_pending(b"\x02" * 32)
    pack = storage.load(Handle(FileType.DATA, saved[1].hex()))
    [blob] = read_pack_header(pack, key, "pack")
    plain = zstandard.ZstdDecompressor().decompress(key.open(
        pack[blob.offset : blob.offset + blob.length]))
    assert plain == b"tree two"


def test_a_failed_upload_fails_flush_and_wakes_every_waiting_thread(key: Key) -> None:
    storage = _SlowRemote(fail_from=3)
    saved: list[bytes] = []
    writer = PackWriter(storage, key, BlobType.DATA, lambda pid, bl: saved.append(pid),
                        target_size=256 * 1024, compress_data=False)
    errors = add_from_threads(writer)
    # Threads that went on adding saw the error (at the latest when they needed a buffer);
    # flush waits for the uploads still running, then raises it too.
    assert all(isinstance(e, PermanentStorageError) for e in errors)
    with pytest.raises(PermanentStorageError, match="access denied"):
        writer.flush()
    assert not _uploads_alive()
    with pytest.raises(PermanentStorageError):  # the writer keeps reporting it
        writer.add(b"\x03" * 32, b"more")
    # Only packs that were stored were reported (and so could be indexed).
    assert len(saved) == 2
    assert {i.name for i in storage.list(FileType.DATA)} == {p.hex() for p in saved}


def test_flush_raises_an_upload_error_even_if_no_add_saw_it(key: Key) -> None:
    storage = _SlowRemote(fail_from=1)
    writer = PackWriter(storage, key, BlobType.DATA, lambda pid, bl: None)
    writer.add(b"\x04" * 32, b"the only blob")
    with pytest.raises(PermanentStorageError):
        writer.flush()
    assert not _uploads_alive()


def test_local_packs_are_written_by_the_filling_thread_two_buffers_at_most(key: Key) -> None:
    storage = _SlowLocal(delay=0.02)
    saved: list[bytes] = []
    writer = PackWriter(storage, key, BlobType.DATA, lambda pid, bl: saved.append(pid),
                        target_size=256 * 1024, compress_data=False)
    assert add_from_threads(writer) == []
    writer.flush()
    assert "pack-upload" not in storage.threads
    assert writer._max_live == packer._MAX_LIVE == 2 and writer._live <= 2
    assert len(saved) >= 20 and storage.saves == len(saved)


class _MeetingRemote(MemoryStorage):
    """An object store whose pack saves wait (a while, at most) for another pack save to
    start: it records whether two ever ran at once."""

    capabilities = Capabilities.remote()

    def __init__(self) -> None:
        super().__init__()
        self.pack_saves = 0
        self.met = False
        self._lock = threading.Lock()
        self._second = threading.Event()

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        if handle.type is FileType.DATA:
            with self._lock:
                self.pack_saves += 1
                first = self.pack_saves == 1
            if first:
                self.met = self._second.wait(5)
            else:
                self._second.set()
        super().save(handle, data)


def test_the_last_data_and_tree_packs_upload_together_on_remote_stores() -> None:
    """A flush writes the open data pack and the open tree pack at the same time on an
    object store (one pack's transfer less before the index and snapshot)."""
    from airflow_backup.repository.repo import Repository

    store = _MeetingRemote()
    repo = Repository.init(store, "pw")
    repo.save_blob(BlobType.DATA, b"some file content")
    repo.save_tree([])
    repo.flush()
    assert store.pack_saves == 2 and store.met
    again = Repository.open(store, "pw")
    again.load_index()
    assert len(again.index) == 2
