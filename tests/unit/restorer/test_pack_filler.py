"""The parallel restorer: packs read once, blobs shared by files, sparse holes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.base import FileType
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
    stats = Restorer(repo, workers=3).restore(result.snapshot, RestoreOptions(target=str(target)))
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
