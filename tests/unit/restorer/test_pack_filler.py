"""The parallel restorer: packs read once, blobs shared by files, sparse holes."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import IntegrityError, RestoreError
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.restorer.walk import find_node
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.memory import MemoryStorage


class CountingStorage(MemoryStorage):
    """Counts ranged reads of pack files."""

    def __init__(self) -> None:
        super().__init__()
        self.pack_reads = 0

    def load(self, handle, offset=0, length=None):  # type: ignore[no-untyped-def]
        if handle.type.value == "data":
            self.pack_reads += 1
        return super().load(handle, offset, length)


def test_shared_blobs_sparse_files_and_one_read_per_pack(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shared = os.urandom(200_000)
    for i in range(50):  # 50 files, 2 distinct contents: blobs shared by many files
        (src / f"copy{i}").write_bytes(shared if i % 2 else shared[::-1])
    sparse = src / "sparse.img"
    with open(sparse, "wb") as f:
        f.truncate(24 * 1024 * 1024)  # all zeros: every chunk is a zero chunk
    storage = CountingStorage()
    repo = Repository.init(storage, "pw")
    repo.pack_size = 4 * 1024 * 1024
    result = Archiver(repo).backup(BackupOptions(paths=[str(src)]))
    packs = len(list(storage.list(FileType.DATA)))
    storage.pack_reads = 0
    target = tmp_path / "restore"
    stats = Restorer(repo, workers=3).restore(result.snapshot, RestoreOptions(
        target=str(target), sparse=True))  # restic's --sparse; its default writes every byte
    out = target / src.relative_to("/")
    for i in range(50):
        assert (out / f"copy{i}").read_bytes() == (shared if i % 2 else shared[::-1])
    restored = out / "sparse.img"
    assert restored.read_bytes() == sparse.read_bytes()
    assert restored.stat().st_size == 24 * 1024 * 1024
    assert restored.stat().st_blocks * 512 < 1024 * 1024  # zero chunks became holes
    assert stats.files == 51
    # One read per tree loaded (the root and every directory), plus each data pack read once
    # (its blobs coalesced into one ranged read) although 50 files share them.
    assert storage.pack_reads <= (stats.dirs + 1) + packs
    dense = tmp_path / "dense"
    Restorer(repo, workers=3).restore(result.snapshot, RestoreOptions(target=str(dense)))
    img = dense / src.relative_to("/") / "sparse.img"
    assert img.read_bytes() == sparse.read_bytes()
    assert img.stat().st_blocks * 512 >= 24 * 1024 * 1024  # without --sparse: no holes


def test_packs_of_small_files_have_their_own_thread_and_all_restore_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On local storage, the blobs of small files are written by one thread of their own and
    large blobs by the pool, never more than ``workers`` at once, also where one pack holds
    both; every file comes back exactly."""
    import threading

    import airflow_backup.restorer.filler as filler_mod

    src = tmp_path / "src"
    (src / "small").mkdir(parents=True)
    rng = random.Random(7)
    small = {f"f{i:03}": rng.randbytes(rng.randint(1, 9000)) for i in range(300)}
    for name, data in small.items():
        (src / "small" / name).write_bytes(data)
    large = {f"big{i}": rng.randbytes(3 * 1024 * 1024) for i in range(3)}
    for name, data in large.items():
        (src / name).write_bytes(data)
    repo = Repository.init(MemoryStorage(), "pw")
    repo.pack_size = 16 * 1024 * 1024
    # One backup worker: the large files' chunks (9 MiB), then the small files, go into one
    # pack, so it holds both kinds whatever the repository's chunker polynomial.
    result = Archiver(repo).backup(BackupOptions(paths=[str(src)], workers=1))
    kinds: dict[bytes, set[bool]] = {}
    for entry in repo.index.entries():
        if entry.blob.type.value == "data":
            kinds.setdefault(entry.pack_id, set()).add(
                entry.blob.plain_length < filler_mod._SMALL_BLOB)
    assert {True, False} in kinds.values()

    seen: dict[str, set[bool]] = {}
    active = 0
    most = 0
    lock = threading.Lock()
    real_fill = filler_mod.PackFiller._fill_pack

    def spy(self: filler_mod.PackFiller, pack_id: bytes, work: filler_mod._PackWork,
            on_done: object) -> None:
        nonlocal active, most
        name = threading.current_thread().name.rsplit("_", 1)[0]
        with lock:
            seen.setdefault(name, set()).update(
                slot[0].plain_length < filler_mod._SMALL_BLOB for slot in work.blobs.values())
            active += 1
            most = max(most, active)
        try:
            real_fill(self, pack_id, work, on_done)  # type: ignore[arg-type]
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(filler_mod.PackFiller, "_fill_pack", spy)
    target = tmp_path / "restore"
    stats = Restorer(repo, workers=2).restore(result.snapshot, RestoreOptions(target=str(target)))
    out = target / src.relative_to("/")
    assert {n: (out / "small" / n).read_bytes() for n in small} == small
    assert {n: (out / n).read_bytes() for n in large} == large
    assert stats.files == 303
    assert seen == {"restore-small": {True}, "restore": {False}}
    assert most <= 2


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past ``limit`` bytes fail with EFBIG (as a full disk fails them), for
    this process only; SIGXFSZ would otherwise kill it."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_file_whose_write_fails_is_removed_and_nothing_is_linked_to_it(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(300_000))  # one blob: fails part-way through
    os.link(src / "big", src / "big_link")
    (src / "multi").write_bytes(os.urandom(3 << 20))  # several blobs: sizing it fails
    (src / "small").write_bytes(b"ok")
    repo = Repository.init(MemoryStorage(), "pw")
    result = Archiver(repo).backup(BackupOptions(paths=[str(src)]))
    target = tmp_path / "restore"
    target.mkdir()
    restorer = Restorer(repo, workers=2)
    with file_size_limit(100_000), pytest.raises(RestoreError):
        restorer.restore(result.snapshot, RestoreOptions(target=str(target)))
    out = target / src.relative_to("/")
    assert sorted(os.listdir(out)) == ["small"]
    assert (out / "small").read_bytes() == b"ok"
    failed = sorted(path.rsplit("/", 1)[1] for path, _ in restorer.stats.errors)
    assert failed == ["big", "big_link", "multi"]
    assert restorer.stats.files == 1


def test_cleanup_after_a_damaged_pack_keeps_its_error_and_what_is_not_ours(
        tmp_path: Path) -> None:
    """A directory in the way of a file is not the restore's to remove: the cleanup leaves
    it, still removes the incomplete files, and the damaged pack's error is the one raised."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"file a")
    # Above the chunker's 8 MiB maximum: at least two blobs, whatever the polynomial.
    (src / "c").write_bytes(os.urandom(10 << 20))
    storage = MemoryStorage()
    repo = Repository.init(storage, "pw")
    repo.pack_size = 1 << 20  # c's blobs span packs: some are written before the bad one
    result = Archiver(repo).backup(BackupOptions(paths=[str(src)], workers=1))
    node, _ = find_node(repo, result.snapshot.tree, str(src / "c"))
    assert node is not None and node.content is not None
    last = repo.index.lookup(BlobType.DATA, node.content[-1])
    first = repo.index.lookup(BlobType.DATA, node.content[0])
    assert last is not None and first is not None and last.pack_id != first.pack_id
    bad = Handle(FileType.DATA, last.pack_id.hex())
    raw = bytearray(storage.load(bad))
    raw[last.blob.offset + 10] ^= 0xFF
    storage.corrupt(bad, bytes(raw))
    target = tmp_path / "restore"
    out = target / src.relative_to("/")
    (out / "a").mkdir(parents=True)
    (out / "a" / "keep").write_bytes(b"mine")
    with pytest.raises(IntegrityError, match=last.pack_id.hex()):
        Restorer(repo, workers=1).restore(result.snapshot, RestoreOptions(target=str(target)))
    assert (out / "a" / "keep").read_bytes() == b"mine"
    assert not (out / "c").exists()
