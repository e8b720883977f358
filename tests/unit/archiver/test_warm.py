"""The metadata warmer: an lstat walk of the backup paths in a background thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from airflow_backup.archiver.warm import MetadataWarmer


def _tree(root: Path) -> int:
    """Make a small tree below ``root``; return how many entries it holds."""
    count = 0
    for d in ("a", "a/b", "c", "skip", "skip/deep"):
        (root / d).mkdir()
        count += 1
        for i in range(3):
            (root / d / f"f{i}").write_bytes(b"x" * i)
            count += 1
    (root / "link").symlink_to(root / "a")  # counted, never followed
    return count + 1


def test_visits_every_entry_below_the_paths(tmp_path: Path) -> None:
    total = _tree(tmp_path)
    with MetadataWarmer([str(tmp_path)]) as warmer:
        assert warmer.wait(30)
    assert warmer.visited == total


def test_skips_excluded_subtrees(tmp_path: Path) -> None:
    total = _tree(tmp_path)
    with MetadataWarmer([str(tmp_path)], ["skip"]) as warmer:
        assert warmer.wait(30)
    assert warmer.visited == total - 1 - 4 - 3  # skip/, its 3 files, deep/ and its 3


def test_missing_and_unreadable_paths_are_passed_over(tmp_path: Path) -> None:
    total = _tree(tmp_path)
    file_target = tmp_path / "a" / "f1"
    with MetadataWarmer([str(tmp_path / "gone"), str(file_target), str(tmp_path)]) as warmer:
        assert warmer.wait(30)
    assert warmer.visited == total


def test_without_paths_no_thread_starts(tmp_path: Path) -> None:
    before = threading.active_count()
    with MetadataWarmer([]) as warmer:
        assert threading.active_count() == before
    assert warmer.visited == 0


def test_leaving_the_block_stops_and_joins_the_thread(tmp_path: Path) -> None:
    for i in range(40):
        d = tmp_path / f"d{i:02}"
        d.mkdir()
        for j in range(50):
            (d / f"f{j}").touch()
    with MetadataWarmer([str(tmp_path)]) as warmer:
        pass
    names = {t.name for t in threading.enumerate()}
    assert "warm-metadata" not in names
    seen = warmer.visited
    assert seen <= 40 * 51
    assert os.path.isdir(tmp_path)  # nothing was changed on disk
    assert warmer.visited == seen  # and nothing runs on after the block
