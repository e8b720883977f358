"""Restore from an object store that streams its ranged reads (issue 26): blobs are decoded
and written while the rest of their read is still arriving, a stream that breaks and is
resumed by the retry wrapper still restores every byte exactly once, a stream that fails
for good stops the restore with no incomplete file left, and a missing pack fails only the
files that need it.

The store is memory behind a wrapper that declares an object store's capabilities and
streams every data-pack read in small chunks. Properties only: nothing is timed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import PermanentStorageError, TransientStorageError
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.base import Capabilities, FileType, Handle, Storage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.readahead import ReadAheadStorage
from airflow_backup.storage.retry import RetryingStorage, RetryPolicy
from airflow_backup.storage.wrapper import DelegatingStorage
from support.salvage import file_nodes, packs_of

CHUNK = 16 << 10


class StreamingRemote(DelegatingStorage):
    """An object store stand-in that streams data-pack reads in ``CHUNK`` pieces.

    ``break_after``: the first stream of each pack raises ``error`` after that many chunks
    (each pack once). ``hold_last``: before a stream hands over its last chunk it waits
    (at most 10 s) for this event, and records in ``overlapped`` whether it was set."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.break_after: int | None = None
        self.error: type[Exception] = TransientStorageError
        self.hold_last: threading.Event | None = None
        self.overlapped: list[bool] = []
        self.streams: list[tuple[str, int, int]] = []
        self._broken: set[str] = set()
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities.remote()

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        with self._lock:
            self.streams.append((handle.name, offset, length))
            breaks = (self.break_after is not None and handle.type is FileType.DATA
                      and handle.name not in self._broken)
            if breaks:
                self._broken.add(handle.name)
        return self._stream(handle, offset, length, self.break_after if breaks else None)

    def _stream(self, handle: Handle, offset: int, length: int,
                limit: int | None) -> Iterator[bytes]:
        data = self.inner.load(handle, offset, length)
        starts = range(0, len(data), CHUNK)
        for i, pos in enumerate(starts):
            if limit is not None and i == limit:
                raise self.error("the connection broke")
            if self.hold_last is not None and i == len(starts) - 1 and i > 0:
                self.overlapped.append(self.hold_last.wait(10))
            yield data[pos:pos + CHUNK]


@pytest.fixture
def remote(tmp_path: Path) -> tuple[MemoryStorage, Snapshot, Path]:
    """Six 1.5 MiB random files and 40 small ones in 1 MiB packs."""
    rng = random.Random(11)
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    (src / "small").mkdir()
    for i in range(6):
        (src / "big" / f"b{i}").write_bytes(rng.randbytes(3 << 19))
    for i in range(40):
        (src / "small" / f"s{i:02}").write_bytes(rng.randbytes(rng.randint(1, 30_000)))
    memory = MemoryStorage()
    repo = Repository.init(memory, "pw")
    repo.pack_size = 1 << 20
    snap = Archiver(repo).backup(BackupOptions(paths=[str(src)])).snapshot
    return memory, snap, src


def _open(store: Storage) -> Repository:
    repo = Repository.open(ReadAheadStorage(store), "pw")
    repo.load_index()
    return repo


def _check_exact(target: Path, paths: list[str], complete: bool) -> None:
    for path in paths:
        restored = target / path.lstrip("/")
        if complete or restored.exists():
            assert restored.read_bytes() == Path(path).read_bytes(), path


def test_blobs_are_written_while_their_read_is_still_arriving(
        remote: tuple[MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    memory, snap, _src = remote
    streaming = StreamingRemote(memory)
    repo = _open(streaming)
    restored = threading.Event()
    streaming.hold_last = restored
    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(
        target=str(target), verify=True, on_item=lambda *_: restored.set()))
    paths = list(file_nodes(repo, snap))
    _check_exact(target, paths, complete=True)
    assert stats.files == stats.verified == len(paths) and not stats.errors
    # Some file was finished while a read still withheld its last chunk: decoding does
    # not wait for a whole read. (Without streaming, every read would wait 10 s here.)
    assert streaming.overlapped and all(streaming.overlapped)
    assert sum(1 for name, _, _ in streaming.streams if name in _data_packs(memory)) > 1


def _data_packs(memory: MemoryStorage) -> set[str]:
    return {info.name for info in memory.list(FileType.DATA)}


def test_a_stream_broken_midway_is_resumed_and_every_byte_restored_once(
        remote: tuple[MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    memory, snap, _src = remote
    streaming = StreamingRemote(memory)
    streaming.break_after = 3
    retrying = RetryingStorage(streaming, RetryPolicy(max_attempts=3), sleep=lambda _: None)
    repo = _open(retrying)
    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(target=str(target), verify=True))
    paths = list(file_nodes(repo, snap))
    _check_exact(target, paths, complete=True)
    assert stats.files == stats.verified == len(paths) and not stats.errors
    assert retrying.retries > 0
    # Each resumed stream asks for exactly the rest of its broken one.
    by_start = {(name, off): n for name, off, n in streaming.streams}
    resumed = 0
    for name, off, n in streaming.streams:
        rest = by_start.get((name, off + 3 * CHUNK))
        if n > 3 * CHUNK and rest is not None:
            assert rest == n - 3 * CHUNK
            resumed += 1
    assert resumed == retrying.retries


def test_a_stream_that_fails_for_good_stops_the_restore_leaving_no_partial_file(
        remote: tuple[MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    memory, snap, _src = remote
    streaming = StreamingRemote(memory)
    streaming.break_after = 2
    streaming.error = PermanentStorageError
    repo = _open(RetryingStorage(streaming, sleep=lambda _: None))
    target = tmp_path / "out"
    with pytest.raises(PermanentStorageError):
        Restorer(repo).restore(snap, RestoreOptions(target=str(target)))
    # Files completed before the error are exact (what arrived before the break was
    # decoded and verified); none is left partly written.
    _check_exact(target, list(file_nodes(repo, snap)), complete=False)


def test_a_missing_pack_fails_only_the_files_that_need_it(
        remote: tuple[MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    memory, snap, _src = remote
    repo = _open(StreamingRemote(memory))
    files = file_nodes(repo, snap)
    gone = next(pack for p in sorted(files) if "/big/" in p
                for pack in sorted(packs_of(repo, files[p])))
    memory.remove(Handle(FileType.DATA, gone.hex()))
    lost = {p for p, n in files.items() if gone in packs_of(repo, n)}
    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(target=str(target), salvage=True))
    assert set(dict(stats.errors)) == lost
    for path in files:
        restored = target / path.lstrip("/")
        assert restored.exists() == (path not in lost), path
    _check_exact(target, list(files), complete=False)
