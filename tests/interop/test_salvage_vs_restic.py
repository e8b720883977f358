"""On a damaged repository (a data pack deleted, one byte flipped in a data blob and in a
leaf directory's tree), our restore brings back at least as many intact files as restic's:
every file whose data is intact. Repositories written by us and by restic alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.tree import Node
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage.base import FileType, Handle, object_path
from airflow_backup.storage.local import LocalStorage
from support.cli import ok, run_cli
from support.salvage import file_nodes, flip_byte, packs_of, write_mixed_tree
from support.tools import run_restic

pytestmark = [pytest.mark.restic, pytest.mark.slow]

PW = "secret-pw"


def _damage(repo: Path, src: Path) -> set[str]:
    """Flip a byte in the blob of a small file, delete a pack of a big file's blobs that
    does not hold that blob, flip a byte in the tree of small/sub; return the files whose
    data is intact."""
    r = Repository.open(LocalStorage(str(repo)), PW)
    r.load_index()
    sn = r.list_snapshots()[-1]
    nodes = {os.fsdecode(p): n for p, n in walk_tree(r, sn.tree)}
    files = file_nodes(r, sn)

    def packs(node: Node) -> set[bytes]:
        return packs_of(r, node)

    flipped = str(src / "small" / "s03.txt")
    entry = r.index.lookup(BlobType.DATA, (files[flipped].content or [])[0])
    assert entry is not None
    big = set().union(*(packs(files[str(src / "big" / f"f{i}.bin")]) for i in range(4)))
    gone = sorted(big - {entry.pack_id})[0]
    sub = nodes[str(src / "small" / "sub")]
    assert sub.subtree is not None
    tree = r.index.lookup(BlobType.TREE, sub.subtree)
    assert tree is not None

    (repo / object_path(Handle(FileType.DATA, gone.hex()))).unlink()
    flip_byte(repo, entry.pack_id, entry.blob.offset + entry.blob.length // 2)
    flip_byte(repo, tree.pack_id, tree.blob.offset + tree.blob.length // 2)
    return {p for p, n in files.items()
            if gone not in packs(n) and p != flipped and not p.startswith(f"{src}/small/sub/")}


def _intact(target: Path, src: Path) -> set[str]:
    """The source files found byte-exact under ``target``."""
    out = set()
    for d, _, names in os.walk(src):
        for name in names:
            original = Path(d) / name
            restored = target / str(original).lstrip("/")
            if restored.is_file() and restored.read_bytes() == original.read_bytes():
                out.add(str(original))
    return out


@pytest.mark.parametrize("writer", ["ours", "restic"])
def test_we_restore_at_least_what_restic_restores_from_a_damaged_repository(
        tmp_path: Path, restic_bin: str, writer: str) -> None:
    src = tmp_path / "src"
    write_mixed_tree(src, 7)
    repo = tmp_path / "repo"
    if writer == "ours":
        ok(run_cli(repo, "init"))
        ok(run_cli(repo, "backup", str(src)))
    else:
        run_restic(repo, "init", password=PW, restic_bin=restic_bin)
        run_restic(repo, "backup", str(src), password=PW, restic_bin=restic_bin)
    expected = _damage(repo, src)
    assert 0 < len(expected) < 34

    theirs_target = tmp_path / "restic-out"
    theirs = run_restic(repo, "restore", "latest", "--target", str(theirs_target),
                        password=PW, restic_bin=restic_bin, check=False)
    ours_target = tmp_path / "our-out"
    ours = run_cli(repo, "restore", "latest", "--target", str(ours_target))
    assert ours.returncode == 3, ours.stderr

    restic_intact = _intact(theirs_target, src)
    our_intact = _intact(ours_target, src)
    print(f"{writer}-written repository: intact files restored by restic "
          f"{len(restic_intact)}, by us {len(our_intact)}, of {len(expected)} with intact "
          f"data (restic exit {theirs.returncode})")
    assert our_intact == expected
    assert len(our_intact) >= len(restic_intact)
    # Nothing incomplete is left by us: every restored file is intact.
    restored = {str(Path("/") / p.relative_to(ours_target)) for p in ours_target.rglob("*")
                if p.is_file()}
    assert restored == our_intact
