"""Repository statistics: how much a set of snapshots would restore, how much unique data it
references, and what deduplication and compression save.

- restore size: the bytes of every file of every selected snapshot (restic's ``restore-size``
  mode; a file reached through several hard links counts once per name);
- raw data: the plaintext size of every distinct blob the snapshots reference (``raw-data``);
- stored: the bytes those blobs occupy in packs (encrypted, compressed);
- dedup ratio = restore size / raw data of the data blobs; compression ratio = raw / stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.prune import referenced_blobs
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["RepoStats", "compute_stats"]


@dataclass(slots=True)
class RepoStats:
    """Totals over the selected snapshots (see the module docstring)."""

    snapshots: int = 0
    files: int = 0
    restore_size: int = 0
    blobs: int = 0
    data_blobs: int = 0
    raw_size: int = 0
    raw_data_size: int = 0
    stored_size: int = 0

    @property
    def dedup_ratio(self) -> float:
        """Return restore size / unique file data (1.0 when there is no data)."""
        return self.restore_size / self.raw_data_size if self.raw_data_size else 1.0

    @property
    def compression_ratio(self) -> float:
        """Return raw size / stored size (1.0 when nothing is stored)."""
        return self.raw_size / self.stored_size if self.stored_size else 1.0

    def to_json(self) -> dict[str, object]:
        """Return the totals and ratios as a JSON object."""
        return {
            "snapshots_count": self.snapshots, "total_file_count": self.files,
            "restore_size": self.restore_size, "total_blob_count": self.blobs,
            "data_blob_count": self.data_blobs, "raw_data_size": self.raw_size,
            "raw_file_data_size": self.raw_data_size, "stored_size": self.stored_size,
            "dedup_ratio": round(self.dedup_ratio, 4),
            "compression_ratio": round(self.compression_ratio, 4),
        }


def compute_stats(repo: Repository, snapshots: Iterable[Snapshot]) -> RepoStats:
    """Given snapshots, return their statistics. Raise IntegrityError if a tree or a
    referenced blob is missing from the index."""
    snaps = list(snapshots)
    repo.load_index()
    out = RepoStats(snapshots=len(snaps))
    per_tree: dict[bytes, tuple[int, int]] = {}

    def totals(tree_id: bytes) -> tuple[int, int]:
        if tree_id not in per_tree:
            files = size = 0
            for node in repo.load_tree(tree_id):
                if node.type == "file":
                    files += 1
                    size += node.size
                elif node.type == "dir" and node.subtree is not None:
                    f, s = totals(node.subtree)
                    files, size = files + f, size + s
            per_tree[tree_id] = (files, size)
        return per_tree[tree_id]

    for sn in snaps:
        files, size = totals(sn.tree)
        out.files += files
        out.restore_size += size
    for blob_type, blob_id in referenced_blobs(repo, snaps):
        entry = repo.index.lookup(blob_type, blob_id)
        if entry is None:
            raise IntegrityError(f"{blob_type.value} blob {blob_id.hex()} is not in the index")
        out.blobs += 1
        out.raw_size += entry.blob.plain_length
        out.stored_size += entry.blob.length
        if blob_type is BlobType.DATA:
            out.data_blobs += 1
            out.raw_data_size += entry.blob.plain_length
    return out
