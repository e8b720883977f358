"""Fixtures for engine-level repository tests: an in-memory repository and a backup helper."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.memory import MemoryStorage

FAST = KdfParams(1024, 8, 1)
Backup = Callable[..., Snapshot]


@pytest.fixture
def mem_repo() -> Repository:
    """A fresh repository on in-memory storage."""
    return Repository.init(MemoryStorage(), "pw", kdf=FAST)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Make ``root`` hold exactly ``files`` (relative path -> content); directories left
    empty are removed."""
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel not in files:
                os.remove(os.path.join(dirpath, name))
    for dirpath, _, _ in os.walk(root, topdown=False):
        if dirpath != str(root) and not os.listdir(dirpath):
            os.rmdir(dirpath)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def backup(tmp_path: Path) -> Backup:
    """``backup(repo, files, time=None, tags=(), host="h")``: make tmp_path/src hold ``files``
    and back it up; return the snapshot."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)

    def run(repo: Repository, files: dict[str, bytes], time: datetime | None = None,
            tags: tuple[str, ...] = (), host: str = "h") -> Snapshot:
        write_files(src, files)
        opts = BackupOptions(paths=[str(src)], tags=list(tags), hostname=host, time=time)
        return Archiver(repo).backup(opts).snapshot

    run.src = src  # type: ignore[attr-defined]
    return run
