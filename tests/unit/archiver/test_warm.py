"""The metadata warmer: an lstat walk of the backup paths in a background thread."""

from __future__ import annotations

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


def test_leaving_the_block_stops_the_walk_and_joins_the_thread(tmp_path: Path) -> None:
    """Leaving the block stops the walk where it is: it does not finish the tree first."""
    for i in range(40):
        d = tmp_path / f"d{i:02}"
        d.mkdir()
        for j in range(50):
            (d / f"f{j}").touch()
    reached = threading.Event()
    warmer = MetadataWarmer([str(tmp_path)], ["no-such-name"])
    real_matches = warmer._excludes.matches

    def first_entry_waits_for_the_stop(path: bytes | str) -> bool:
        # The first entry holds the walk until the block has been left.
        if not reached.is_set():
            reached.set()
            assert warmer._stop.wait(30)
        return real_matches(path)

    warmer._excludes.matches = first_entry_waits_for_the_stop  # type: ignore[method-assign]
    with warmer:
        assert reached.wait(30)
    assert "warm-metadata" not in {t.name for t in threading.enumerate()}
    assert warmer.visited <= 1  # of 40 directories and 2,000 files
