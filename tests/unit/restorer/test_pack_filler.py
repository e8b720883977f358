"""The parallel restorer: packs read once, blobs shared by files, sparse holes."""

from __future__ import annotations

import os
from pathlib import Path

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
