"""diff, stats, repair snapshots and check's tree rules on in-memory repositories."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.repository.check import CheckOptions, check_repository, select_packs
from airflow_backup.repository.diff import diff_snapshots
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repair import repair_snapshots
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.stats import compute_stats
from airflow_backup.repository.tree import MODE_DIR, Node
from airflow_backup.storage.base import FileType, Handle

Backup = Callable[..., Snapshot]
T = "2024-01-01T00:00:00Z"


def test_diff_reports_added_removed_modified_type_and_metadata(
    mem_repo: Repository, backup: Backup
) -> None:
    src: Path = backup.src  # type: ignore[attr-defined]
    a = backup(mem_repo, {"same": b"s", "changed": b"1", "gone/x": b"x", "turns": b"file"})
    (src / "turns").unlink()
    b = backup(mem_repo, {"same": b"s", "changed": b"2", "new/y": b"y", "turns/z": b"z"})
    changes = [(c.modifier, c.path.removeprefix(str(src))) for c in
               diff_snapshots(mem_repo, a, b).changes]
    # As restic: a type change is one "T" line, its new contents are not listed as added.
    assert changes == [("M", "/changed"), ("-", "/gone/"), ("-", "/gone/x"), ("+", "/new/"),
                       ("+", "/new/y"), ("T", "/turns/")]
    os.chmod(src / "same", 0o600)
    c = backup(mem_repo, {"same": b"s", "changed": b"2", "new/y": b"y", "turns/z": b"z"})
    assert ("U", f"{src}/same") in [(x.modifier, x.path) for x in
                                    diff_snapshots(mem_repo, b, c, metadata=True).changes]
    assert all(x.modifier != "U" for x in diff_snapshots(mem_repo, b, c).changes)
    result = diff_snapshots(mem_repo, a, b)
    assert result.changed_files == 1 and result.added.files == 1 and result.removed.files == 1
    # restic's blob statistics: added "2" and "y" (a type change's new contents are not
    # walked), removed "1", "x" and the old file "turns".
    assert result.added.data_blobs == 2 and result.removed.data_blobs == 3


def test_stats_counts_restore_size_and_distinct_data(mem_repo: Repository,
                                                     backup: Backup) -> None:
    one = backup(mem_repo, {"a": b"A" * 1000, "b": b"B" * 500})
    two = backup(mem_repo, {"a": b"A" * 1000, "b": b"B" * 500, "c": b"A" * 1000})
    st_ = compute_stats(mem_repo, [one, two])
    assert st_.snapshots == 2 and st_.files == 5
    assert st_.restore_size == 1500 + 2500
    assert st_.raw_data_size == 1500 and st_.data_blobs == 2  # c dedups with a
    assert st_.dedup_ratio == 4000 / 1500
    assert st_.stored_size < st_.raw_size  # repetitive data compresses


def _snapshot(repo: Repository, nodes: list[Node]) -> Snapshot:
    tree, _ = repo.save_tree(nodes)
    sn = Snapshot(time=T, tree=tree, paths=["/d"], hostname="h")
    repo.save_snapshot(sn)
    return sn


def test_repair_snapshots_rewrites_what_is_missing(mem_repo: Repository) -> None:
    good, _ = mem_repo.save_blob(BlobType.DATA, b"intact")
    missing = b"\x42" * 32
    nodes = [
        Node(name=b"broken-dir", type="dir", mode=MODE_DIR | 0o755, mtime=T, atime=T,
             ctime=T, subtree=b"\x13" * 32),
        Node(name=b"file", type="file", mode=0o644, mtime=T, atime=T, ctime=T, size=99,
             content=[good, missing]),
        Node(name=b"weird", type="irregular", mtime=T, atime=T, ctime=T),
    ]
    sn = _snapshot(mem_repo, nodes)
    unrelated = _snapshot(mem_repo, [Node(name=b"ok", type="file", mode=0o644, mtime=T,
                                          atime=T, ctime=T, size=6, content=[good])])
    orphan = Snapshot(time=T, tree=b"\x77" * 32, paths=["/x"], hostname="h")
    mem_repo.save_snapshot(orphan)
    assert not check_repository(mem_repo).ok

    dry = repair_snapshots(mem_repo, [sn, unrelated, orphan], dry_run=True)
    assert [r.status for r in dry] == ["repaired", "unchanged", "removed"]
    assert len(mem_repo.list_snapshots()) == 3

    results = repair_snapshots(mem_repo, mem_repo.list_snapshots(), forget=True)
    by_old = {r.snapshot.id: r for r in results}
    assert by_old[orphan.id].status == "removed"
    fixed = by_old[sn.id]
    assert sorted(fixed.lost) == [
        ("/broken-dir/", "directory unreadable; replaced by an empty one"),
        ("/file", "1 of 2 data blobs missing; file truncated to 6 bytes"),
        ("/weird", "node of invalid type 'irregular' removed"),
    ]
    remaining = {s.id: s for s in mem_repo.list_snapshots()}
    assert set(remaining) == {unrelated.id, fixed.new_id}
    new = remaining[fixed.new_id]
    assert new.original == bytes.fromhex(sn.id) and "repaired" not in new.tags
    assert new.extra["airflow_backup"]["repaired"]["from"] == sn.id
    tree = mem_repo.load_tree(new.tree)
    assert [n.name for n in tree] == [b"broken-dir", b"file"]
    assert tree[1].content == [good] and tree[1].size == 6
    assert mem_repo.load_tree(tree[0].subtree or b"") == []
    assert check_repository(mem_repo).ok


def test_check_reports_malformed_nodes(mem_repo: Repository) -> None:
    _snapshot(mem_repo, [Node(name=b"nolist", type="file", mtime=T, atime=T, ctime=T),
                         Node(name=b"nosub", type="dir", mtime=T, atime=T, ctime=T)])
    report = check_repository(mem_repo)
    assert any("file 'nolist' has no content list" in e for e in report.errors)
    assert any("dir 'nosub' has no subtree" in e for e in report.errors)
    (items,) = report.affected.values()
    assert sorted(a.path for a in items) == ["/nolist", "/nosub"]


@settings(max_examples=50, deadline=None)
@given(st.sets(st.binary(min_size=32, max_size=32), max_size=60),
       st.integers(min_value=1, max_value=12))
def test_read_data_buckets_partition_the_packs(packs: set[bytes], t: int) -> None:
    sizes = dict.fromkeys(packs, 10)
    parts = [select_packs(sizes, f"{n}/{t}") for n in range(1, t + 1)]
    assert set().union(*parts) == packs
    assert sum(len(p) for p in parts) == len(packs)
    sample = select_packs(sizes, "25%", seed=1)
    assert sample <= packs and len(sample) == (max(1, len(packs) // 4) if packs else 0)


@pytest.mark.parametrize("read_data", [True, False])
@pytest.mark.parametrize("victim", [0, 1])
def test_check_loads_a_tree_from_its_intact_copy(mem_repo: Repository, victim: int,
                                                 read_data: bool) -> None:
    """A tree blob stored in two packs, one copy damaged: the damaged pack is an error, but
    the directory is not lost (restic tries every copy too)."""
    kids = [Node(name=b"f", type="file", mode=0o644, mtime=T, atime=T, ctime=T, size=0,
                 content=[])]
    subtree, _ = mem_repo.save_tree(kids)
    _snapshot(mem_repo, [Node(name=b"d", type="dir", mode=MODE_DIR | 0o755, mtime=T, atime=T,
                              ctime=T, subtree=subtree)])
    # A writer that has not loaded the index stores the tree again, in a pack of its own.
    again = Repository.open(mem_repo.storage, "pw")
    again.save_tree(kids)
    again.flush()
    fresh = Repository.open(mem_repo.storage, "pw")
    copies = [(pack, b.offset) for _, packs in fresh.load_index_files()
              for pack, blobs in packs.items() for b in blobs if b.id == subtree]
    assert len(copies) == 2
    pack, offset = copies[victim]
    handle = Handle(FileType.DATA, pack.hex())
    raw = bytearray(mem_repo.storage.load(handle))
    raw[offset + 20] ^= 0xFF
    mem_repo.storage.corrupt(handle, bytes(raw))  # type: ignore[attr-defined]

    report = check_repository(fresh, CheckOptions(read_data=read_data))
    assert report.affected == {}
    assert not any(e.startswith("tree ") for e in report.errors)
    assert all(pack.hex() in e for e in report.errors)
    # Without --read-data copies are read only until one loads: the damaged one is named
    # if it was read before the intact one.
    assert bool(report.errors) == bool(report.damaged_packs)
    if read_data or report.errors:
        assert list(report.damaged_packs) == [pack.hex()]
