"""A restore never writes outside its target, whatever the repository's trees say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_backup.errors import RestoreError, UnsafePath
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import MODE_DIR, MODE_SYMLINK, Node
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.memory import MemoryStorage

os.environ.setdefault("AIRFLOW_BACKUP_KDF_PARAMS", "1024,8,1")
T = "2024-01-01T00:00:00Z"


def _repo() -> Repository:
    return Repository.init(MemoryStorage(), "pw")


def _file(repo: Repository, name: bytes, data: bytes) -> Node:
    blob_id, _ = repo.save_blob(BlobType.DATA, data)
    return Node(name=name, type="file", mode=0o644, mtime=T, atime=T, ctime=T, size=len(data),
                content=[blob_id])


def _dir(repo: Repository, name: bytes, children: list[Node]) -> Node:
    tree_id, _ = repo.save_tree(sorted(children, key=lambda n: n.name))
    return Node(name=name, type="dir", mode=MODE_DIR | 0o755, mtime=T, atime=T, ctime=T,
                subtree=tree_id)


def _snapshot(repo: Repository, nodes: list[Node]) -> Snapshot:
    tree_id, _ = repo.save_tree(sorted(nodes, key=lambda n: n.name))
    sn = Snapshot(time=T, tree=tree_id, paths=["/x"])
    repo.save_snapshot(sn)
    return sn


@pytest.mark.parametrize("bad", [b"..", b".", b"a/b", b"../escape", b"nul\0byte", b""])
def test_unsafe_names_are_refused(tmp_path: Path, bad: bytes) -> None:
    repo = _repo()
    sn = _snapshot(repo, [_dir(repo, b"d", [_file(repo, bad, b"evil")])])
    target = tmp_path / "target"
    with pytest.raises(UnsafePath):
        Restorer(repo).restore(sn, RestoreOptions(target=str(target)))
    assert not (tmp_path / "escape").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_existing_symlink_in_target_is_not_followed(tmp_path: Path) -> None:
    repo = _repo()
    outside = tmp_path / "outside"
    outside.mkdir()
    sn = _snapshot(repo, [_dir(repo, b"d", [_file(repo, b"f", b"data")])])
    target = tmp_path / "target"
    target.mkdir()
    (target / "d").symlink_to(outside)
    restorer = Restorer(repo)
    with pytest.raises(RestoreError):
        restorer.restore(sn, RestoreOptions(target=str(target)))
    assert list(outside.iterdir()) == []
    assert (target / "d").is_symlink()
    assert [path for path, _ in restorer.stats.errors] == ["/d"]


def test_restored_symlink_is_not_followed_by_a_later_file(tmp_path: Path) -> None:
    # First snapshot: "link" is a symlink to a directory outside the target.
    repo = _repo()
    outside = tmp_path / "outside"
    outside.mkdir()
    link = Node(name=b"link", type="symlink", mode=MODE_SYMLINK | 0o777, mtime=T, atime=T,
                ctime=T, linktarget=os.fsencode(outside))
    first = _snapshot(repo, [link])
    # Second snapshot: "link" is a directory holding a file.
    second = _snapshot(repo, [_dir(repo, b"link", [_file(repo, b"payload", b"x")])])
    target = tmp_path / "target"
    Restorer(repo).restore(first, RestoreOptions(target=str(target)))
    assert (target / "link").is_symlink()
    restorer = Restorer(repo)
    with pytest.raises(RestoreError):
        restorer.restore(second, RestoreOptions(target=str(target)))
    assert list(outside.iterdir()) == []
    assert [path for path, _ in restorer.stats.errors] == ["/link"]


def test_a_file_in_the_way_of_a_directory_is_reported_and_the_rest_restored(
        tmp_path: Path) -> None:
    repo = _repo()
    sn = _snapshot(repo, [_file(repo, b"a_file", b"A" * 10),
                          _dir(repo, b"b_dir", [_file(repo, b"x", b"X")]),
                          _file(repo, b"c_file", b"C" * 10)])
    target = tmp_path / "target"
    target.mkdir()
    (target / "b_dir").write_text("old regular file\n")
    restorer = Restorer(repo)
    with pytest.raises(RestoreError, match="1 item"):
        restorer.restore(sn, RestoreOptions(target=str(target)))
    assert [path for path, _ in restorer.stats.errors] == ["/b_dir"]
    assert (target / "b_dir").read_text() == "old regular file\n"
    assert (target / "a_file").read_bytes() == b"A" * 10
    assert (target / "c_file").read_bytes() == b"C" * 10
    assert restorer.stats.files == 2


def test_file_written_over_existing_symlink_replaces_the_link(tmp_path: Path) -> None:
    repo = _repo()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    sn = _snapshot(repo, [_file(repo, b"f", b"new content")])
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").symlink_to(outside)
    Restorer(repo).restore(sn, RestoreOptions(target=str(target)))
    assert outside.read_text() == "keep me"
    assert not (target / "f").is_symlink()
    assert (target / "f").read_bytes() == b"new content"


def test_sparse_zero_chunks_restore_as_zeros(tmp_path: Path) -> None:
    repo = _repo()
    data = b"\0" * (1 << 20) + b"tail"
    sn = _snapshot(repo, [_file(repo, b"zeros", data[: 1 << 20]) ])
    node = repo.load_tree(sn.tree)[0]
    blob_tail, _ = repo.save_blob(BlobType.DATA, b"tail")
    node.content = [*(node.content or []), blob_tail]
    node.size = len(data)
    sn2 = _snapshot(repo, [node])
    Restorer(repo).restore(sn2, RestoreOptions(target=str(tmp_path / "t")))
    assert (tmp_path / "t" / "zeros").read_bytes() == data
