"""The real restic binary checks and restores what we write, and we restore what it writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.cli import ok as _ok
from support.cli import run_cli
from support.tools import restic_version, run_restic
from support.trees import TreeSpec, compare_trees, restored_path

pytestmark = [pytest.mark.restic]

PW = "secret-pw"




def _lossy(restic_bin: str) -> bool:
    # restic < 0.16 has no linktarget_raw and mangles non-UTF-8 symlink targets itself.
    return restic_version(restic_bin) < (0, 16, 0)


@pytest.mark.slow
def test_restic_checks_and_restores_our_backup(
    tmp_path: Path, tricky_tree: TreeSpec, restic_bin: str
) -> None:
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    _ok(run_cli(repo, "backup", str(tricky_tree.root), "--tag", "interop"))

    check = run_restic(repo, "check", "--read-data", password=PW, restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout

    target = tmp_path / "restic-restore"
    run_restic(repo, "restore", "latest", "--target", str(target), password=PW,
               restic_bin=restic_bin)
    diffs = compare_trees(tricky_tree.root, restored_path(target, tricky_tree.root),
                          lossy_symlink_targets=_lossy(restic_bin))
    assert diffs == []

    # Our own restore reproduces it exactly too, including non-UTF-8 symlink targets.
    ours = tmp_path / "our-restore"
    _ok(run_cli(repo, "restore", "latest", "--target", str(ours)))
    assert compare_trees(tricky_tree.root, restored_path(ours, tricky_tree.root)) == []


@pytest.mark.slow
def test_we_restore_what_restic_wrote(
    tmp_path: Path, tricky_tree: TreeSpec, restic_bin: str
) -> None:
    repo = tmp_path / "restic-repo"
    run_restic(repo, "init", password=PW, restic_bin=restic_bin)
    run_restic(repo, "backup", str(tricky_tree.root), "--tag", "from-restic", password=PW,
               restic_bin=restic_bin)

    listed = run_cli(repo, "--json", "snapshots")
    _ok(listed)
    ours = json.loads(listed.stdout)
    theirs = json.loads(run_restic(repo, "snapshots", "--json", password=PW,
                                   restic_bin=restic_bin).stdout)
    assert [s["id"] for s in ours] == [s["id"] for s in theirs]
    assert ours[0]["tags"] == ["from-restic"]
    assert ours[0]["paths"] == [str(tricky_tree.root)]

    target = tmp_path / "restore"
    _ok(run_cli(repo, "restore", "latest", "--target", str(target)))
    diffs = compare_trees(tricky_tree.root, restored_path(target, tricky_tree.root),
                          lossy_symlink_targets=_lossy(restic_bin))
    assert diffs == []

    dumped = run_cli(repo, "dump", "latest", str(tricky_tree.big_file))
    _ok(dumped)
    assert dumped.stdout == tricky_tree.big_file.read_bytes()


@pytest.mark.slow
def test_restic_backs_up_and_prunes_in_our_repository(
    tmp_path: Path, tricky_tree_factory: object, restic_bin: str
) -> None:
    factory = tricky_tree_factory  # type: ignore[assignment]
    first = factory("first", big_file_size=2 << 20, small_files=50, depth=5)  # type: ignore[operator]
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    _ok(run_cli(repo, "backup", str(first.root), "--tag", "ours-1"))
    # Change the tree, back it up again with us, then with restic.
    (first.root / "small" / "added.txt").write_bytes(os.urandom(4096))
    _ok(run_cli(repo, "backup", str(first.root), "--tag", "ours-2"))
    second = factory("second", big_file_size=1 << 20, small_files=20, depth=3,  # type: ignore[operator]
                     seed=7)
    run_restic(repo, "backup", str(second.root), "--tag", "restic-1", password=PW,
               restic_bin=restic_bin)

    snaps = json.loads(run_cli(repo, "--json", "snapshots").stdout)
    assert sorted(t for s in snaps for t in s["tags"]) == ["ours-1", "ours-2", "restic-1"]
    ours_1 = next(s for s in snaps if s["tags"] == ["ours-1"])

    run_restic(repo, "forget", ours_1["id"], "--prune", password=PW, restic_bin=restic_bin)
    run_restic(repo, "check", "--read-data", password=PW, restic_bin=restic_bin)

    remaining = json.loads(run_cli(repo, "--json", "snapshots").stdout)
    assert sorted(t for s in remaining for t in s["tags"]) == ["ours-2", "restic-1"]

    t2 = tmp_path / "r-ours-2"
    _ok(run_cli(repo, "restore", "latest", "--tag", "ours-2", "--target", str(t2)))
    restored = restored_path(t2, first.root)
    # The changed tree: identical to the source except for the file we added.
    assert compare_trees(first.root, restored) == []
    assert (restored / "small" / "added.txt").read_bytes() == \
        (first.root / "small" / "added.txt").read_bytes()

    t3 = tmp_path / "r-restic-1"
    _ok(run_cli(repo, "restore", "latest", "--tag", "restic-1", "--target", str(t3)))
    assert compare_trees(second.root, restored_path(t3, second.root),
                         lossy_symlink_targets=_lossy(restic_bin)) == []


def test_extended_attributes_round_trip_both_ways(tmp_path: Path, restic_bin: str) -> None:
    src = tmp_path / "xattr-src"
    src.mkdir()
    f = src / "tagged.txt"
    f.write_text("with attributes")
    os.setxattr(f, "user.airflow", b"dag=\x00\xffbinary")
    os.setxattr(src, "user.dir", b"on a directory")

    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    _ok(run_cli(repo, "backup", str(src)))
    by_restic = tmp_path / "by-restic"
    run_restic(repo, "restore", "latest", "--target", str(by_restic), password=PW,
               restic_bin=restic_bin)
    by_us = tmp_path / "by-us"
    _ok(run_cli(repo, "restore", "latest", "--target", str(by_us)))
    for target in (by_restic, by_us):
        root = restored_path(target, src)
        assert os.getxattr(root / "tagged.txt", "user.airflow") == b"dag=\x00\xffbinary"
        assert os.getxattr(root, "user.dir") == b"on a directory"

    restic_repo = tmp_path / "restic-repo"
    run_restic(restic_repo, "init", password=PW, restic_bin=restic_bin)
    run_restic(restic_repo, "backup", str(src), password=PW, restic_bin=restic_bin)
    from_restic = tmp_path / "from-restic"
    _ok(run_cli(restic_repo, "restore", "latest", "--target", str(from_restic)))
    root = restored_path(from_restic, src)
    assert os.getxattr(root / "tagged.txt", "user.airflow") == b"dag=\x00\xffbinary"
