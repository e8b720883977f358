"""Which paths a restore selects: include and exclude patterns, and a snapshot sub-path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import ConfigError
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.memory import MemoryStorage


def _backup(src: Path, files: dict[str, bytes],
            modes: dict[str, int] | None = None) -> tuple[Repository, Snapshot]:
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    for rel, mode in (modes or {}).items():
        os.chmod(src / rel, mode)
    repo = Repository.init(MemoryStorage(), "pw")
    return repo, Archiver(repo).backup(BackupOptions(paths=[str(src)])).snapshot


def _found(root: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("*.txt", ["docs", "docs/a.txt"]),
    ("*.nothing", []),
])
def test_include_creates_only_what_holds_selected_items(
        tmp_path: Path, pattern: str, expected: list[str]) -> None:
    """As restic 0.14: a directory an include might match below is created only if
    something below it is restored, and then gets its own metadata."""
    src = tmp_path / "src"
    repo, sn = _backup(src, {"docs/a.txt": b"A", "secret/keys/id_rsa": b"K",
                             "logs/x.log": b"L"}, modes={"docs": 0o750})
    target = tmp_path / "t"
    stats = Restorer(repo).restore(sn, RestoreOptions(target=str(target), includes=[pattern]))
    out = target / src.relative_to("/")
    assert (_found(out) if out.exists() else []) == expected
    assert stats.files == len([p for p in expected if p.endswith(".txt")])
    if expected:
        assert stat.S_IMODE((out / "docs").stat().st_mode) == 0o750
        assert (out / "docs").stat().st_mtime_ns == (src / "docs").stat().st_mtime_ns


def test_a_sub_path_restores_its_contents_and_patterns_are_relative_to_it(
        tmp_path: Path) -> None:
    """restic >= 0.16's SNAPSHOT:SUBFOLDER (doc/050_restore.rst): the contents of SUBFOLDER
    go into the target, and --include/--exclude name paths below it (``/secret``)."""
    src = tmp_path / "src"
    repo, sn = _backup(src, {"data/public": b"P", "data/secret": b"S"})
    sub = str(src / "data")

    def restore(**patterns: list[str]) -> list[str]:
        target = tmp_path / f"t{len(os.listdir(tmp_path))}"
        Restorer(repo).restore(sn, RestoreOptions(target=str(target), subpath=sub, **patterns))
        return _found(target)

    assert restore() == ["public", "secret"]
    assert restore(excludes=["/secret"]) == ["public"]
    assert restore(includes=["/public"]) == ["public"]
    assert restore(excludes=[f"{sub}/secret"]) == ["public", "secret"]  # full paths: no match
    with pytest.raises(ConfigError, match="not a directory"):
        Restorer(repo).restore(sn, RestoreOptions(target=str(tmp_path / "f"),
                                                  subpath=f"{sub}/public"))
    assert not (tmp_path / "f").exists()  # refused before anything is written
