"""Restored files get their modes and owners back whatever the umask, the number of blobs
(a read-only file of several blobs is written through more than one open) or a setgid
directory in the target."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import RestoreError
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.memory import MemoryStorage

MODES = {"plain": 0o644, "private": 0o600, "exec": 0o755, "readonly": 0o444,
         "setuid": 0o4755, "none": 0o000, "group": 0o664}


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _tree(src: Path) -> None:
    src.mkdir()
    for name, mode in MODES.items():
        p = src / name
        p.write_bytes(name.encode() * 10)
        p.chmod(mode)
    big = src / "big-readonly"  # several blobs: reopened for each, so created writable
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    big.chmod(0o444)
    empty = src / "empty"
    empty.touch()
    empty.chmod(0o640)


def _restore(tmp_path: Path, src: Path, target: Path) -> Path:
    repo = Repository.init(MemoryStorage(), "pw")
    snap = Archiver(repo).backup(BackupOptions(paths=[str(src)])).snapshot
    Restorer(repo).restore(snap, RestoreOptions(target=str(target)))
    return target / src.relative_to("/")


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o277])
def test_every_mode_comes_back_whatever_the_umask(tmp_path: Path, umask: None,
                                                  mask: int) -> None:
    src = tmp_path / "src"
    _tree(src)
    os.umask(mask)
    out = _restore(tmp_path, src, tmp_path / "restore")
    for name in [*MODES, "big-readonly", "empty"]:
        assert stat.S_IMODE((out / name).stat().st_mode) == \
            stat.S_IMODE((src / name).stat().st_mode), name
        assert (out / name).read_bytes() == (src / name).read_bytes(), name


@pytest.mark.skipif(os.geteuid() != 0, reason="only root restores owners")
def test_owners_come_back_even_in_a_setgid_directory(tmp_path: Path, umask: None) -> None:
    src = tmp_path / "src"
    _tree(src)
    os.chown(src / "plain", 1234, 5678)
    os.chown(src / "group", 0, 4321)
    target = tmp_path / "restore"
    target.mkdir()
    os.chown(target, 0, 999)
    target.chmod(0o2755)  # new entries below take group 999 unless chowned
    out = _restore(tmp_path, src, target)
    for name in [*MODES, "big-readonly", "empty"]:
        got, want = (out / name).stat(), (src / name).stat()
        assert (got.st_uid, got.st_gid) == (want.st_uid, want.st_gid), name
        assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(want.st_mode), name


@pytest.mark.parametrize("attr", [{"name": 5, "value": "AA=="}, {"name": "user.a", "value": 1},
                                  {"value": "AA=="}])
def test_an_extended_attribute_that_is_not_a_name_and_a_value_is_a_restore_error(
        tmp_path: Path, attr: dict[str, object]) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    node = Node(name=b"f", type="file", mode=0o644, content=[],
                extended_attributes=[attr])  # type: ignore[list-item]
    tree, _ = repo.save_tree([node])
    snap = Snapshot(time="2024-01-01T00:00:00Z", tree=tree, paths=["/f"])
    repo.save_snapshot(snap)
    with pytest.raises(RestoreError, match="extended attribute"):
        Restorer(repo).restore(snap, RestoreOptions(target=str(tmp_path / "out")))
