"""Restore from an object store: pack downloads overlap (several ranged reads in flight),
each read covers only what the restore needs (read-ahead widens none of them), memory stays
within the filler's budget, and salvage, cleanup, progress and rate limits hold as on local
storage.

The store is memory behind a wrapper that declares an object store's capabilities and
delays every pack read a little, so that reads of different packs can overlap; it records
every pack read and how many were under way at once. Properties only: nothing is timed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import IntegrityError, PermanentStorageError
from airflow_backup.repository.packs import BlobType, PackedBlob
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node
from airflow_backup.restorer import filler
from airflow_backup.restorer.filler import _MAX_GAP, _PackWork, _plan_reads, _Target
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.base import Capabilities, FileType, Handle, Storage
from airflow_backup.storage.limiter import RateLimitedStorage, TokenBucket
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.readahead import ReadAheadStorage
from airflow_backup.storage.wrapper import DelegatingStorage
from support.salvage import file_nodes, packs_of

DELAY = 0.05  # per pack read: long enough for reads of other packs to start meanwhile


class SlowRemote(DelegatingStorage):
    """An object store stand-in: remote capabilities, ``DELAY`` per data-pack read, every
    pack read recorded as (pack, offset, bytes returned), and the most reads (and bytes)
    under way at once. ``fail_after``: the data-pack read after that many raises a
    permanent storage error."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.reads: list[tuple[str, int, int]] = []
        self.max_inflight = 0
        self.max_inflight_bytes = 0
        self.fail_after: int | None = None
        self._inflight = 0
        self._inflight_bytes = 0
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities.remote()

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        if handle.type is not FileType.DATA:
            return self.inner.load(handle, offset, length)
        asked = length if length is not None else self.inner.stat(handle).size - offset
        with self._lock:
            if self.fail_after is not None and len(self.reads) >= self.fail_after:
                raise PermanentStorageError("the store went away")
            self._inflight += 1
            self._inflight_bytes += asked
            self.max_inflight = max(self.max_inflight, self._inflight)
            self.max_inflight_bytes = max(self.max_inflight_bytes, self._inflight_bytes)
        try:
            time.sleep(DELAY)
            data = self.inner.load(handle, offset, length)
            with self._lock:
                self.reads.append((handle.name, offset, len(data)))
            return data
        finally:
            with self._lock:
                self._inflight -= 1
                self._inflight_bytes -= asked

    def reset(self) -> None:
        with self._lock:
            self.reads.clear()
            self.max_inflight = self.max_inflight_bytes = 0


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[tuple[Repository, SlowRemote, MemoryStorage, Snapshot,
                                             Path]]:
    """Eight 1.5 MiB random files and 40 small ones in 1 MiB packs: a dozen or more data
    packs, some holding blobs of several files. The repository reads through read-ahead
    (as on an object store) over the slow store."""
    rng = random.Random(7)
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    (src / "small").mkdir()
    for i in range(8):
        (src / "big" / f"b{i}").write_bytes(rng.randbytes(3 << 19))
    for i in range(40):
        (src / "small" / f"s{i:02}").write_bytes(rng.randbytes(rng.randint(1, 30_000)))
    memory = MemoryStorage()
    slow = SlowRemote(memory)
    repo = Repository.init(ReadAheadStorage(slow), "pw")
    repo.pack_size = 1 << 20
    snap = Archiver(repo).backup(BackupOptions(paths=[str(src)])).snapshot
    repo.load_index()
    slow.reset()
    yield repo, slow, memory, snap, src


def _needed_spans(repo: Repository, nodes: list[Node]) -> dict[str, tuple[int, int]]:
    """Return, for every data pack the files need, the span from its first needed blob's
    start to its last needed blob's end."""
    spans: dict[str, tuple[int, int]] = {}
    for node in nodes:
        for blob_id in node.content or []:
            entry = repo.index.lookup(BlobType.DATA, blob_id)
            assert entry is not None
            pack, blob = entry.pack_id.hex(), entry.blob
            lo, hi = spans.get(pack, (blob.offset, blob.offset + blob.length))
            spans[pack] = (min(lo, blob.offset), max(hi, blob.offset + blob.length))
    return spans


def _check_reads(slow: SlowRemote, spans: dict[str, tuple[int, int]]) -> None:
    """Every read of a needed pack lies inside its needed span, and no pack is read for more
    bytes than that span (reads of tree packs, which the walk loads, are not counted)."""
    per_pack: dict[str, int] = {}
    for pack, offset, n in slow.reads:
        if pack not in spans:
            continue
        lo, hi = spans[pack]
        assert lo <= offset and offset + n <= hi, (pack, offset, n, spans[pack])
        per_pack[pack] = per_pack.get(pack, 0) + n
    assert set(per_pack) == set(spans)  # every needed pack was read
    for pack, n in per_pack.items():
        assert n <= spans[pack][1] - spans[pack][0], pack


def _same_tree(target: Path, src: Path, paths: list[str]) -> None:
    for path in paths:
        assert (target / path.lstrip("/")).read_bytes() == Path(path).read_bytes(), path


def test_full_restore_overlaps_pack_reads_and_reads_only_needed_spans(
        remote: tuple[Repository, SlowRemote, MemoryStorage, Snapshot, Path],
        tmp_path: Path) -> None:
    repo, slow, _, snap, src = remote
    files = file_nodes(repo, snap)
    spans = _needed_spans(repo, list(files.values()))
    assert len(spans) >= 6  # a multi-pack snapshot
    slow.reset()
    items: list[tuple[str, str, int]] = []
    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(
        target=str(target), verify=True, on_item=lambda *a: items.append(a)))
    _same_tree(target, src, list(files))
    assert stats.files == stats.verified == len(files) and not stats.errors
    assert slow.max_inflight > 1
    _check_reads(slow, spans)
    # Progress: every file reported once, with its size.
    restored = {p: size for action, p, size in items if action == "restored" and size >= 0}
    assert restored == {p: n.size for p, n in files.items()}


def test_partial_restore_is_not_widened_by_read_ahead(
        remote: tuple[Repository, SlowRemote, MemoryStorage, Snapshot, Path],
        tmp_path: Path) -> None:
    """Only some files' blobs are needed: each read stays within their span of the pack,
    where an 8 MiB read-ahead window would read on to the pack's end."""
    repo, slow, _, snap, src = remote
    files = file_nodes(repo, snap)
    chosen = sorted(p for p in files if "/small/" in p)[::3]
    spans = _needed_spans(repo, [files[p] for p in chosen])
    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(target=str(target), includes=chosen))
    assert stats.files == len(chosen)
    _same_tree(target, src, chosen)
    _check_reads(slow, spans)


def test_pack_data_held_at_once_stays_within_the_budget(
        remote: tuple[Repository, SlowRemote, MemoryStorage, Snapshot, Path],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, slow, _, snap, src = remote
    monkeypatch.setattr(filler, "_REMOTE_BUDGET_PER_WORKER", 1 << 20)
    workers = 4
    target = tmp_path / "out"
    paths = list(file_nodes(repo, snap))
    # Straight over the slow store: read-ahead's 8 MiB tree windows would count as well.
    direct = Repository.open(slow, "pw")
    slow.reset()
    Restorer(direct, workers=workers).restore(snap, RestoreOptions(target=str(target)))
    _same_tree(target, src, paths)
    assert slow.max_inflight > 1
    assert slow.max_inflight_bytes <= workers * (1 << 20)
    # A read never exceeds the budget (a span longer than it is split).
    assert max(n for _, _, n in slow.reads) <= workers * (1 << 20)


def test_salvage_through_the_pipeline_loses_only_what_is_damaged(
        remote: tuple[Repository, SlowRemote, MemoryStorage, Snapshot, Path],
        tmp_path: Path) -> None:
    repo, _slow, memory, snap, _src = remote
    files = file_nodes(repo, snap)
    victim = next(p for p in sorted(files) if "/small/" in p and files[p].content)
    entry = repo.index.lookup(BlobType.DATA, (files[victim].content or [])[0])
    assert entry is not None
    # (Backups pack in parallel: which packs hold which files varies from run to run.)
    gone = next(pack for p in sorted(files) if "/big/" in p
                for pack in sorted(packs_of(repo, files[p])) if pack != entry.pack_id)
    memory.remove(Handle(FileType.DATA, gone.hex()))
    handle = Handle(FileType.DATA, entry.pack_id.hex())
    raw = bytearray(memory.load(handle))
    raw[entry.blob.offset + entry.blob.length // 2] ^= 0x01
    memory.corrupt(handle, bytes(raw))
    lost = {p for p, n in files.items() if gone in packs_of(repo, n)} | {victim}

    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(target=str(target), salvage=True))
    for path in files:
        restored = target / path.lstrip("/")
        if path in lost:
            assert not restored.exists(), path
        else:
            assert restored.read_bytes() == Path(path).read_bytes(), path
    reasons = dict(stats.errors)
    assert set(reasons) == lost
    assert "damaged" in reasons[victim]
    assert all(gone.hex() in r and "missing" in r for p, r in reasons.items() if p != victim)
    # Strict mode restores the same and then raises.
    with pytest.raises(IntegrityError):
        Restorer(repo).restore(snap, RestoreOptions(target=str(tmp_path / "strict")))


def test_a_storage_error_stops_the_restore_and_leaves_no_incomplete_file(
        remote: tuple[Repository, SlowRemote, MemoryStorage, Snapshot, Path],
        tmp_path: Path) -> None:
    repo, slow, _, snap, _src = remote
    files = file_nodes(repo, snap)
    target = tmp_path / "out"
    restorer = Restorer(repo)
    slow.fail_after = 3
    with pytest.raises(PermanentStorageError):
        restorer.restore(snap, RestoreOptions(target=str(target)))
    # Files completed before the error are exact; none is left partly written.
    for path in files:
        restored = target / path.lstrip("/")
        if restored.exists():
            assert restored.read_bytes() == Path(path).read_bytes(), path


def test_download_limit_paces_every_pack_read(
        remote: tuple[Repository, SlowRemote, MemoryStorage, Snapshot, Path],
        tmp_path: Path) -> None:
    """--limit-download's bucket (around the backend, as composed) is charged for every
    byte the pipelined downloads move."""
    repo, slow, _memory, snap, src = remote
    slept: list[float] = []
    bucket = TokenBucket(64 << 10, sleep=slept.append)  # a fake sleep: nothing waits
    limited = Repository.open(ReadAheadStorage(RateLimitedStorage(slow, download=bucket)),
                              "pw")
    limited.load_index()
    paths = list(file_nodes(repo, snap))
    slow.reset()
    paced_before = bucket.paced_bytes
    target = tmp_path / "out"
    Restorer(limited).restore(snap, RestoreOptions(target=str(target)))
    _same_tree(target, src, paths)
    assert bucket.paced_bytes - paced_before >= sum(n for _, _, n in slow.reads)
    assert slept  # far over 64 KiB/s: the bucket asked for waits


def _work(layout: list[tuple[int, int]]) -> _PackWork:
    work = _PackWork()
    for i, (offset, length) in enumerate(layout):
        blob = PackedBlob(BlobType.DATA, bytes([i % 256, i // 256]) + bytes(30), offset,
                          length, 0)
        work.blobs[blob.id] = (blob, [_Target(None, 0)])  # type: ignore[arg-type]
    return work


@pytest.mark.parametrize("seed", range(20))
def test_planned_reads_cover_each_blob_once_within_the_limits(seed: int) -> None:
    rng = random.Random(seed)
    layout, offset = [], rng.randrange(0, 100)
    for _ in range(rng.randrange(1, 80)):
        length = rng.choice([rng.randrange(40, 5000), rng.randrange(1 << 19, 3 << 20)])
        layout.append((offset, length))
        offset += length + rng.choice([0, 0, 0, rng.randrange(1, 3 << 20)])
    max_read = rng.choice([1 << 20, 4 << 20, 32 << 20])
    reads = _plan_reads("ab" * 32, _work(layout), max_read)
    covered = [(b.offset, b.length) for r in reads for b, _ in r.blobs]
    assert covered == sorted(layout)  # each blob once, in pack order
    for r in reads:
        assert r.length <= max_read or len(r.blobs) == 1
        for (a, _), (b, _) in zip(r.blobs, r.blobs[1:], strict=False):
            assert b.offset - (a.offset + a.length) <= _MAX_GAP
    # A span that fits one read is one read.
    whole = _plan_reads("ab" * 32, _work([(i << 20, 1 << 20) for i in range(8)]), 8 << 20)
    assert len(whole) == 1
    # A longer span is cut about evenly, not into full reads and a short tail.
    parts = _plan_reads("ab" * 32, _work([(i << 20, 1 << 20) for i in range(18)]), 8 << 20)
    assert [p.length for p in parts] == [6 << 20] * 3
