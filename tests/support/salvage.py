"""Shared by the salvage tests (unit, e2e, interop with restic): the source tree they back
up, the file nodes of a snapshot, the packs a file's data lives in, and damage to a pack."""

from __future__ import annotations

import os
import random
from pathlib import Path

from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage.base import FileType, Handle, object_path

__all__ = ["file_nodes", "flip_byte", "packs_of", "write_mixed_tree"]


def write_mixed_tree(root: Path, seed: int) -> None:
    """Four 12 MB files under ``big/`` and 30 small ones (1 B to 40 KB) spread over
    ``small/``, ``small/sub`` and ``small/other``: several packs, shared and not."""
    rng = random.Random(seed)
    for d in ("big", "small", "small/sub", "small/other"):
        (root / d).mkdir(parents=True)
    for i in range(4):
        (root / "big" / f"f{i}.bin").write_bytes(rng.randbytes(12_000_000))
    for i in range(30):
        where = root / ("small", "small/sub", "small/other")[i % 3]
        (where / f"s{i:02}.txt").write_bytes(rng.randbytes(rng.randint(1, 40_000)))


def file_nodes(repo: Repository, snap: Snapshot) -> dict[str, Node]:
    """Return the snapshot's regular files by path (the index is loaded)."""
    repo.load_index()
    return {os.fsdecode(p): n for p, n in walk_tree(repo, snap.tree) if n.type == "file"}


def packs_of(repo: Repository, node: Node) -> set[bytes]:
    """Return the ids of the packs holding ``node``'s data blobs."""
    packs = set()
    for blob_id in node.content or []:
        entry = repo.index.lookup(BlobType.DATA, blob_id)
        assert entry is not None
        packs.add(entry.pack_id)
    return packs


def flip_byte(repo_dir: Path, pack: bytes, offset: int) -> None:
    """Flip one bit of the byte at ``offset`` of data pack ``pack`` in a local repository."""
    path = repo_dir / object_path(Handle(FileType.DATA, pack.hex()))
    path.chmod(0o600)
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
