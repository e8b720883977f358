"""Parent snapshots: unchanged files are not read again, unchanged trees are reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.archiver.parent import NO_PARENT, ParentTree
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.walk import find_node
from airflow_backup.storage.memory import MemoryStorage


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for d in range(3):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(5):
            (root / f"d{d}" / f"f{f}.bin").write_bytes(os.urandom(2000 + f))
    (root / "big.bin").write_bytes(os.urandom(3_000_000))
    return root


def _backup(repo: Repository, root: Path, **kw: object) -> object:
    return Archiver(repo).backup(BackupOptions(paths=[str(root)], **kw))  # type: ignore[arg-type]


def test_unchanged_files_are_not_read_and_trees_are_reused(tree: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    first = _backup(repo, tree)
    second = _backup(repo, tree)
    s = second.stats  # type: ignore[attr-defined]
    assert s.files_unmodified == 16 and s.files_new == 0 and s.files_changed == 0
    assert s.data_added == 0 and s.data_blobs == 0
    # The backed-up directory's tree is reused as it is. Only trees of the directories above
    # it (/tmp, …) may be new, since other processes change their mtimes meanwhile.
    assert s.tree_blobs <= len(tree.parts) - 1
    old_node, _ = find_node(repo, first.snapshot.tree, str(tree))  # type: ignore[attr-defined]
    new_node, _ = find_node(repo, second.snapshot.tree, str(tree))  # type: ignore[attr-defined]
    assert old_node is not None and new_node is not None
    assert new_node.subtree == old_node.subtree
    assert second.snapshot.parent == bytes.fromhex(first.snapshot.id)  # type: ignore[attr-defined]


def test_changed_and_new_files_are_detected(tree: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    _backup(repo, tree)
    changed = tree / "d0" / "f0.bin"
    st = changed.stat()
    changed.write_bytes(os.urandom(st.st_size))  # same size, new content and mtime
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))
    (tree / "d2" / "new.bin").write_bytes(b"new")
    second = _backup(repo, tree)
    s = second.stats  # type: ignore[attr-defined]
    assert (s.files_new, s.files_changed, s.files_unmodified) == (1, 1, 15)
    assert s.dirs_changed >= 2 and s.dirs_unmodified == 1  # d1 untouched


def test_force_rereads_everything_and_parent_can_be_named(tree: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    first = _backup(repo, tree)
    forced = _backup(repo, tree, force=True)
    s = forced.stats  # type: ignore[attr-defined]
    assert s.files_unmodified == 0 and s.files_new == 16
    assert s.data_added == 0  # everything deduplicated
    assert forced.snapshot.parent is None  # type: ignore[attr-defined]
    named = _backup(repo, tree, parent=first.snapshot.id[:8])  # type: ignore[attr-defined]
    assert named.snapshot.parent == bytes.fromhex(first.snapshot.id)  # type: ignore[attr-defined]
    assert named.stats.files_unmodified == 16  # type: ignore[attr-defined]


def test_parent_must_match_host_and_paths(tree: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    _backup(repo, tree, hostname="a")
    other_host = _backup(repo, tree, hostname="b")
    assert other_host.stats.files_unmodified == 0  # type: ignore[attr-defined]
    other_paths = _backup(repo, tree / "d0", hostname="a")
    assert other_paths.stats.files_unmodified == 0  # type: ignore[attr-defined]


def test_the_walk_takes_the_warm_ups_listings_and_sees_what_they_saw(tree: Path) -> None:
    """With a parent, the walk uses the warm-up's listings and lstat results instead of its
    own: the snapshot is the one a walk of its own makes (a changed, a new and a removed file
    included), and every listing is taken. Without a parent they are dropped unused."""
    from airflow_backup.archiver.warm import MetadataWarmer

    repo = Repository.init(MemoryStorage(), "pw")
    with MetadataWarmer([str(tree)]) as first_warm:
        assert first_warm.wait(30)
    _backup_warm = Archiver(repo, warmed=first_warm).backup(BackupOptions(paths=[str(tree)]))
    assert first_warm._listings == {}  # no parent: forgotten, not used
    (tree / "d0" / "f1.bin").write_bytes(b"changed")
    (tree / "d1" / "new.txt").write_bytes(b"new")
    (tree / "d2" / "f0.bin").unlink()
    with MetadataWarmer([str(tree)]) as warm:
        assert warm.wait(30)
    taken: list[bytes] = []
    real_take = warm.take_listing

    def take(path: bytes) -> object:
        listing = real_take(path)
        if listing is not None:
            taken.append(path)
        return listing

    warm.take_listing = take  # type: ignore[method-assign]
    warmed = Archiver(repo, warmed=warm).backup(BackupOptions(paths=[str(tree)]))
    s = warmed.stats
    assert (s.files_new, s.files_changed, s.files_unmodified) == (1, 1, 14)
    assert sorted(taken) == sorted(os.fsencode(p) for p in [tree, *tree.iterdir()]
                                   if p.is_dir())
    assert warm._listings == {}
    own = _backup(repo, tree, parent=_backup_warm.snapshot.id)
    node_warm, _ = find_node(repo, warmed.snapshot.tree, str(tree))
    node_own, _ = find_node(repo, own.snapshot.tree, str(tree))  # type: ignore[attr-defined]
    assert node_warm is not None and node_own is not None
    assert node_warm.subtree == node_own.subtree


@pytest.mark.parametrize("nodes", [b'[{"name":5,"type":"file"}]', b'[{"type":"file"}]',
                                   b'["x"]', b'"x"'])
def test_a_malformed_parent_tree_is_no_parent(nodes: bytes) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    tree_id, _ = repo.save_blob(BlobType.TREE, b'{"nodes":' + nodes + b"}\n")
    assert ParentTree.load(repo, tree_id) is NO_PARENT
