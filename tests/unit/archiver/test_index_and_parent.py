"""A backup to a remote store loads the index and looks for the parent snapshot at the same
time (issue 26): two listings and their file loads, round trips that need not wait for each
other. On a local store they run one after the other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import TransientStorageError
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import Capabilities, FileInfo, FileType
from airflow_backup.storage.memory import MemoryStorage


class _SlowListings(MemoryStorage):
    """Listings of index and snapshot files take a round trip; records how many ran at
    once, and may fail the snapshot listing."""

    capabilities = Capabilities.remote()

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self.fail_snapshots = False
        self._count = threading.Lock()

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        if file_type not in (FileType.INDEX, FileType.SNAPSHOT):
            yield from super().list(file_type)
            return
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.2)
            if self.fail_snapshots and file_type is FileType.SNAPSHOT:
                raise TransientStorageError("list snapshots: SlowDown")
            found = list(super().list(file_type))
        finally:
            with self._count:
                self.running -= 1
        yield from found


class _SlowLocal(_SlowListings):
    capabilities = Capabilities.local(load_into=False)


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(5):
        (root / "sub" / f"f{i}").write_bytes(bytes([i]) * (1000 * (i + 1)))
    return root


def test_remote_index_and_parent_load_at_once(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    storage = _SlowListings()
    repo = Repository.init(storage, "pw")
    first = Archiver(repo).backup(BackupOptions(paths=[str(data)]))
    assert storage.most == 2  # the index and snapshot listings overlapped

    again = Repository.open(storage, "pw")
    second = Archiver(again).backup(BackupOptions(paths=[str(data)]))
    assert second.snapshot.parent == bytes.fromhex(first.snapshot.id)
    assert second.snapshot.tree == first.snapshot.tree


def test_a_failed_listing_is_raised_once_both_are_done(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    storage = _SlowListings()
    repo = Repository.init(storage, "pw")
    storage.fail_snapshots = True
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(TransientStorageError, match="SlowDown"):
        Archiver(repo).backup(BackupOptions(paths=[str(data)]))
    # Nothing was saved, and the index loader is not left running.
    assert storage.running == 0
    assert not [t for t in threading.enumerate()
                if t.name.startswith("index") and t.name not in before]
    storage.fail_snapshots = False
    assert list(storage.list(FileType.SNAPSHOT)) == []


def test_local_index_and_parent_load_one_after_the_other(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    storage = _SlowLocal()
    repo = Repository.init(storage, "pw")
    Archiver(repo).backup(BackupOptions(paths=[str(data)]))
    assert storage.most == 1
