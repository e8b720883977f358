"""The metadata cache: repeated opens do not re-download metadata; bad copies are refetched."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.opener import TreePacks
from airflow_backup.repository.opener import open_cached as open_repository
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.cache import CachingStorage, resolve_cache_root
from airflow_backup.storage.memory import MemoryStorage

PW = "pw"


class Counting(MemoryStorage):
    """Memory storage that counts loads per file type."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: Counter[FileType] = Counter()

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        self.loads[handle.type] += 1
        return super().load(handle, offset, length)


@pytest.fixture
def repo_with_snapshot(tmp_path: Path) -> tuple[Counting, Path]:
    store = Counting()
    repo = Repository.init(store, PW, kdf=KdfParams(1024, 8, 1))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n" * 100)
    (src / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    Archiver(repo).backup(BackupOptions(paths=[str(src)]))
    return store, src


def _list_and_walk(store: Counting, cache_root: Path, target: Path) -> Repository:
    repo = open_repository(store, PW, cache=True, cache_root=cache_root)
    snap = repo.list_snapshots()[-1]
    Restorer(repo).restore(snap, RestoreOptions(target=str(target)))
    return repo


def test_second_open_downloads_no_metadata(repo_with_snapshot: tuple[Counting, Path],
                                           tmp_path: Path) -> None:
    store, _src = repo_with_snapshot
    cache_root = tmp_path / "cache"
    first = _list_and_walk(store, cache_root, tmp_path / "r1")
    assert store.loads[FileType.INDEX] >= 1 and store.loads[FileType.SNAPSHOT] >= 1
    assert (cache_root / first.config.id / "index").is_dir()
    store.loads.clear()
    second = _list_and_walk(store, cache_root, tmp_path / "r2")
    assert store.loads[FileType.INDEX] == 0
    assert store.loads[FileType.SNAPSHOT] == 0
    # Data loads now fetch file contents only: the tree pack came from the cache.
    assert isinstance(second.storage, CachingStorage)
    assert second.storage.hits >= 3
    data_packs = {i.name for i in store.list(FileType.DATA)}
    tree_packs = [n for n in data_packs if (cache_root / first.config.id / "data" / n[:2]
                                            / n).exists()]
    assert len(tree_packs) == 1


def test_tree_packs_follow_the_index_as_it_grows(repo_with_snapshot: tuple[Counting, Path],
                                                 tmp_path: Path) -> None:
    """The cache keeps the packs holding trees, and only those, including packs that a
    later backup through the same repository object adds to its index."""
    store, src = repo_with_snapshot
    repo = open_repository(store, PW, cache=True, cache_root=tmp_path / "cache")
    repo.load_index()
    is_tree_pack = TreePacks(repo.index)
    before = {i.name for i in store.list(FileType.DATA)}
    trees_before = {p.hex() for p in repo.index.packs(BlobType.TREE)}
    assert len(before) == 2 and len(trees_before) == 1
    assert [n for n in sorted(before) if is_tree_pack(n)] == sorted(trees_before)
    (src / "new.txt").write_bytes(b"more\n")
    Archiver(repo).backup(BackupOptions(paths=[str(src)]))
    added = {i.name for i in store.list(FileType.DATA)} - before
    new_trees = {n for n in added if is_tree_pack(n)}
    assert len(new_trees) == 1 and new_trees < {p.hex() for p in repo.index.packs(BlobType.TREE)}
    assert not any(is_tree_pack(n) for n in added - new_trees)


def test_a_tampered_cache_file_is_detected_and_refetched(
    repo_with_snapshot: tuple[Counting, Path], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, _src = repo_with_snapshot
    cache_root = tmp_path / "cache"
    repo = _list_and_walk(store, cache_root, tmp_path / "r1")
    snap_dir = cache_root / repo.config.id / "snapshots"
    cached = next(snap_dir.iterdir())
    cached.write_bytes(b"not what it claims to be")
    store.loads.clear()
    again = open_repository(store, PW, cache=True, cache_root=cache_root)
    assert [s.id for s in again.list_snapshots()] == [cached.name]
    assert store.loads[FileType.SNAPSHOT] == 1
    assert "does not match its id" in caplog.text
    assert cached.read_bytes() == store.load(Handle(FileType.SNAPSHOT, cached.name))


def test_files_gone_from_the_store_leave_the_cache(repo_with_snapshot: tuple[Counting, Path],
                                                   tmp_path: Path) -> None:
    store, _ = repo_with_snapshot
    cache_root = tmp_path / "cache"
    repo = _list_and_walk(store, cache_root, tmp_path / "r1")
    snap_id = repo.list_snapshots()[0].id
    store.remove(Handle(FileType.SNAPSHOT, snap_id))  # e.g. forgotten by another host
    again = open_repository(store, PW, cache=True, cache_root=cache_root)
    assert again.list_snapshots() == []
    assert not (cache_root / repo.config.id / "snapshots" / snap_id).exists()


def test_resolve_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW_BACKUP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_root() == tmp_path / "xdg" / "airflow-backup"
    monkeypatch.setenv("AIRFLOW_BACKUP_CACHE_DIR", str(tmp_path / "explicit"))
    assert resolve_cache_root() == tmp_path / "explicit"
    assert resolve_cache_root("~/given") == Path.home() / "given"  # --cache-dir wins


def test_replace_file_sets_its_mode_whatever_the_umask_and_leaves_no_temp_file(
        tmp_path: Path) -> None:
    from airflow_backup.storage.atomic import replace_file

    target = tmp_path / "f"
    old = os.umask(0o077)
    try:
        replace_file(target, b"one", mode=0o644)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"one" and target.stat().st_mode & 0o777 == 0o644
    replace_file(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(OSError):
        replace_file(tmp_path / "no-such-dir" / "f", b"x")
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        replace_file(tmp_path / "d", b"x")  # a directory is in the way of the rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]
