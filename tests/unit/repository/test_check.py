"""check_repository reads the store itself, never the metadata cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_backup.repository.check import CheckOptions, check_repository
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.opener import open_cached as open_repository
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.cache import CachingStorage
from airflow_backup.storage.local import LocalStorage

Backup = Callable[..., Snapshot]


@pytest.mark.parametrize("read_data", [False, True])
@pytest.mark.parametrize("damaged", ["index", "snapshots", "data"])
def test_check_sees_damage_that_the_cache_would_hide(tmp_path: Path, backup: Backup,
                                                     damaged: str, read_data: bool) -> None:
    """Bit rot in a stored index, snapshot or tree-pack file is reported even when an
    intact copy of it sits in the cache (restic checks with a fresh cache)."""
    root = tmp_path / "repo"
    backup(Repository.init(LocalStorage(root), "pw", kdf=KdfParams(1024, 8, 1)),
           {"a": b"x" * 5000})
    cache_root = tmp_path / "cache"
    warm = open_repository(LocalStorage(root), "pw", cache=True, cache_root=cache_root)
    (snap,) = warm.list_snapshots()
    warm.load_index()
    assert snap.tree is not None
    warm.load_tree(snap.tree)
    cache_dir = cache_root / warm.config.id
    (rel,) = [p.relative_to(cache_dir) for p in (cache_dir / damaged).rglob("*")
              if p.is_file()]
    data = bytearray((root / rel).read_bytes())
    data[40] ^= 0xFF
    (root / rel).write_bytes(bytes(data))

    repo = open_repository(LocalStorage(root), "pw", cache=True, cache_root=cache_root)
    assert isinstance(repo.storage, CachingStorage)
    report = check_repository(repo, CheckOptions(read_data=read_data))
    assert not report.ok
    assert any(rel.name in e for e in report.errors), report.errors
    assert repo.storage.hits == 0  # the check never read a cached copy
