"""Copying snapshots between repositories, as ``restic copy`` does.

Blob ids are SHA-256 digests of the plaintext, the same in every repository, so a copy needs
no re-chunking: each blob a snapshot references that the destination lacks is read from the
source (decrypted, verified), and stored in the destination with its own key (re-encrypted,
compressed as the destination does). Every tree of the snapshot is walked and every blob
checked on its own — a tree present in the destination says nothing about its files' data
if an earlier copy was interrupted. The snapshot is written last, with ``original`` naming
the source snapshot and no ``parent`` (a parent id of the source means nothing in the
destination); a source snapshot already copied (same original and tree) is skipped.

Chunk boundaries depend on the chunker polynomial, so data backed up separately into both
repositories deduplicates only if they share it (``init --copy-chunker-params`` in restic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import decode_tree

__all__ = ["CopyResult", "copy_snapshots", "original_id"]


@dataclass(slots=True)
class CopyResult:
    """What a copy did: ``(source id, new id)`` per copied snapshot, the source ids skipped
    because the destination has them, and the blobs and plaintext bytes transferred."""

    copied: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0


def original_id(sn: Snapshot) -> str:
    """Return the id of the snapshot ``sn`` was first saved as (its own, if never copied or
    rewritten)."""
    return sn.original.hex() if sn.original else sn.id


def _copy_tree(src: Repository, dst: Repository, tree_id: bytes, seen: set[bytes],
               result: CopyResult) -> None:
    """Copy the tree ``tree_id``, its subtrees and its files' data blobs that ``dst``
    lacks (children first)."""
    stack: list[tuple[bytes, bool]] = [(tree_id, False)]
    while stack:
        tid, expanded = stack.pop()
        if expanded:
            if not dst.has_blob(BlobType.TREE, tid):
                raw = src.load_blob(BlobType.TREE, tid)
                dst.save_blob(BlobType.TREE, raw, tid)
                result.blobs += 1
                result.bytes += len(raw)
            continue
        if tid in seen:
            continue
        seen.add(tid)
        stack.append((tid, True))
        for node in decode_tree(src.load_blob(BlobType.TREE, tid), f"tree {tid.hex()}"):
            for blob_id in node.content or ():
                if not dst.has_blob(BlobType.DATA, blob_id):
                    data = src.load_blob(BlobType.DATA, blob_id)
                    dst.save_blob(BlobType.DATA, data, blob_id)
                    result.blobs += 1
                    result.bytes += len(data)
            if node.subtree is not None:
                stack.append((node.subtree, False))


def copy_snapshots(src: Repository, dst: Repository, snapshots: Iterable[Snapshot],
                   on_copied: Callable[[Snapshot, str], None] | None = None) -> CopyResult:
    """Copy ``snapshots`` of ``src`` into ``dst`` (both locked by the caller, dst's index
    loaded); skip those ``dst`` already has. ``on_copied(source snapshot, new id)`` is
    called after each one is saved."""
    src.load_index()
    dst.load_index()
    have = {(original_id(s), s.tree) for s in dst.list_snapshots(warn=False) if not s.damaged}
    result = CopyResult()
    seen: set[bytes] = set()
    for sn in snapshots:
        if (original_id(sn), sn.tree) in have:
            result.skipped.append(sn.id)
            continue
        _copy_tree(src, dst, sn.tree, seen, result)
        copy = replace(sn, parent=None, original=bytes.fromhex(original_id(sn)), id="")
        new_id = dst.save_snapshot(copy)  # flushes the packs and the index first
        have.add((original_id(sn), sn.tree))
        result.copied.append((sn.id, new_id))
        if on_copied is not None:
            on_copied(sn, new_id)
    return result
