"""The metadata warmer: an lstat walk of the backup paths in a background thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

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
    real_rejects = warmer.exclusions.rejects_name

    def first_entry_waits_for_the_stop(path: bytes, name: bytes,
                                       tags: frozenset[bytes]) -> bool:
        # The first entry holds the walk until the block has been left.
        if not reached.is_set():
            reached.set()
            assert warmer._stop.wait(30)
        return real_rejects(path, name, tags)

    warmer.exclusions.rejects_name = first_entry_waits_for_the_stop  # type: ignore[method-assign]
    with warmer:
        assert reached.wait(30)
    assert "warm-metadata" not in {t.name for t in threading.enumerate()}
    assert warmer.visited <= 1  # of 40 directories and 2,000 files


def test_keeps_each_directory_listing_with_its_lstat_fields(tmp_path: Path) -> None:
    """What the walk takes instead of listing and lstat-ing again: names in order, every
    field a node is built from, excluded entries left out; each listing is taken once."""
    import os

    _tree(tmp_path)
    with MetadataWarmer([str(tmp_path)], ["skip"]) as warmer:
        assert warmer.wait(30)
    root = os.fsencode(tmp_path)
    listing = warmer.take_listing(root)
    assert listing is not None
    assert [name for name, _ in listing] == [b"a", b"c", b"link"]
    sub = warmer.take_listing(root + b"/a")
    assert sub is not None
    for name, kept in sub:
        real = os.lstat(root + b"/a/" + name)
        fields = ["st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
                  "st_rdev", "st_mtime_ns", "st_ctime_ns"]
        if name != b"b":  # a directory's access time moves when the walk lists it
            fields.append("st_atime_ns")
        for field in fields:
            assert getattr(kept, field) == getattr(real, field), (name, field)
    assert [name for name, _ in sub] == [b"b", b"f0", b"f1", b"f2"]
    assert warmer.take_listing(root) is None  # taken already
    assert warmer.take_listing(root + b"/skip") is None  # excluded: never listed
    warmer.forget()
    assert warmer.take_listing(root + b"/c") is None


def test_a_directory_with_an_unreadable_entry_or_an_old_listing_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry the warm-up could not lstat makes its directory's listing unusable (the
    walk must meet the error itself); listings past their age, or past the cap, are not
    kept or not given out."""
    import os

    import airflow_backup.archiver.warm as warm_mod

    _tree(tmp_path)
    real_lstat = os.lstat

    def failing(path: bytes) -> os.stat_result:
        if path.endswith(b"/c/f1"):
            raise PermissionError(13, "Permission denied", path)
        return real_lstat(path)

    monkeypatch.setattr(warm_mod.os, "lstat", failing)
    with MetadataWarmer([str(tmp_path)]) as warmer:
        assert warmer.wait(30)
    root = os.fsencode(tmp_path)
    assert warmer.take_listing(root + b"/c") is None
    assert warmer.take_listing(root + b"/a") is not None
    monkeypatch.setattr(warm_mod, "_MAX_AGE", 0.0)
    assert warmer.take_listing(root + b"/a/b") is None
    monkeypatch.setattr(warm_mod, "_MAX_AGE", 30.0)
    monkeypatch.setattr(warm_mod, "_KEEP_MAX", 2)
    with MetadataWarmer([str(tmp_path)]) as capped:
        assert capped.wait(30)
    assert capped.take_listing(root) is not None  # the first directory, 6 entries
    assert capped.take_listing(root + b"/a") is None  # past the cap: only warmed
