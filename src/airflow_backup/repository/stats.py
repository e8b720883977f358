"""Repository statistics: how much a set of snapshots would restore, how much unique data it
references, and what deduplication and compression save.

- restore size: the bytes of every file of every selected snapshot (restic's ``restore-size``
  mode; a file reached through several hard links counts once per name);
- raw data: the plaintext size of every distinct blob the snapshots reference (``raw-data``);
- stored: the bytes those blobs occupy in packs (encrypted, compressed);
- dedup ratio = restore size / raw data of the data blobs; compression ratio = raw / stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.crypto import EXTENSION
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.prune import referenced_blobs
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node
from airflow_backup.repository.walk import walk_nodes

__all__ = ["MODES", "ModeStats", "RepoStats", "compute_mode_stats", "compute_stats"]


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


#: restic's ``stats --mode`` values.
MODES = ("restore-size", "files-by-contents", "raw-data", "blobs-per-file")


@dataclass(slots=True)
class ModeStats:
    """restic's ``stats`` totals in one counting mode (see :func:`compute_mode_stats`)."""

    mode: str
    snapshots: int = 0
    total_size: int = 0
    total_file_count: int = 0
    total_blob_count: int = 0
    total_uncompressed_size: int = 0
    compressed_size: int = 0
    compressed_uncompressed_size: int = 0

    @property
    def compression_ratio(self) -> float:
        """Return how much the compressed blobs shrank (0 when none is compressed)."""
        if not self.compressed_size:
            return 0.0
        return self.compressed_uncompressed_size / self.compressed_size

    @property
    def compression_progress(self) -> float:
        """Return the percentage of the data (uncompressed) held by compressed blobs."""
        if not self.total_uncompressed_size:
            return 0.0
        return self.compressed_uncompressed_size / self.total_uncompressed_size * 100

    @property
    def compression_space_saving(self) -> float:
        """Return the percentage compression saves over storing everything uncompressed."""
        if not self.total_uncompressed_size:
            return 0.0
        return (1 - self.total_size / self.total_uncompressed_size) * 100

    def to_json(self) -> dict[str, object]:
        """Return restic's JSON object: its fields in its order, zero counters and ratios
        left out as Go's ``omitempty`` does (``total_size`` and ``snapshots_count`` always)."""
        out: dict[str, object] = {"total_size": self.total_size}
        for key, value in (("total_uncompressed_size", self.total_uncompressed_size),
                           ("compression_ratio", self.compression_ratio),
                           ("compression_progress", self.compression_progress),
                           ("compression_space_saving", self.compression_space_saving),
                           ("total_file_count", self.total_file_count),
                           ("total_blob_count", self.total_blob_count)):
            if value:
                out[key] = value
        out["snapshots_count"] = self.snapshots
        return out


def _walk(repo: Repository, tree_id: bytes) -> Iterator[tuple[str, Node]]:
    for path, node in walk_nodes(repo, tree_id):
        yield path.decode("utf-8", "surrogateescape"), node


def compute_mode_stats(repo: Repository, snapshots: Iterable[Snapshot], mode: str) -> ModeStats:
    """Given snapshots, return restic's ``stats`` in ``mode`` (one of :data:`MODES`):

    - ``restore-size``: every node of every snapshot is counted (directories and links
      too); sizes add up, a hard-linked inode (links > 1) once per snapshot;
    - ``files-by-contents``: nodes counted once per distinct content (the sequence of
      their data blob ids; every node without content shares one), with the size of the
      first one seen;
    - ``blobs-per-file``: for those same distinct nodes, each (path, data blob) pair once,
      with the blob's plaintext size; files are the paths with blobs;
    - ``raw-data``: every distinct blob (data and tree) the snapshots reference, with its
      stored size; for a version-2 repository also the size uncompressed and the
      compression figures.

    Raise IntegrityError if a tree or a referenced blob is missing from the index."""
    snaps = list(snapshots)
    repo.load_index()
    st = ModeStats(mode=mode, snapshots=len(snaps))
    if mode == "raw-data":
        for blob_type, blob_id in referenced_blobs(repo, snaps):
            entry = repo.index.lookup(blob_type, blob_id)
            if entry is None:
                raise IntegrityError(f"{blob_type.value} blob {blob_id.hex()} is not in the "
                                     "index")
            blob = entry.blob
            st.total_size += blob.length
            st.total_blob_count += 1
            if repo.config.version >= 2:
                # restic's UncompressedCiphertextLength: what the blob would take stored
                uncompressed = (blob.uncompressed_length + EXTENSION if blob.compressed
                                else blob.length)
                st.total_uncompressed_size += uncompressed
                if blob.compressed:
                    st.compressed_size += blob.length
                    st.compressed_uncompressed_size += uncompressed
        return st
    seen_contents: set[bytes] = set()
    file_blobs: dict[str, set[bytes]] = {}
    for sn in snaps:
        inodes: set[tuple[int, int]] = set()
        for path, node in _walk(repo, sn.tree):
            if mode == "restore-size":
                st.total_file_count += 1
                if node.links == 1 or node.type == "dir":
                    st.total_size += node.size
                elif node.inode == 0 or (node.inode, node.device_id) not in inodes:
                    inodes.add((node.inode, node.device_id))
                    st.total_size += node.size
                continue
            content = b"".join(node.content or ())
            if content in seen_contents:
                continue
            seen_contents.add(content)
            if mode == "files-by-contents":
                st.total_size += node.size
                st.total_file_count += 1
                continue
            for blob_id in node.content or ():
                # restic keys a file by its path joined with its name again (a quirk with
                # no effect on the totals)
                key = path + "/" + node.name.decode("utf-8", "surrogateescape")
                blobs = file_blobs.get(key)
                if blobs is None:
                    blobs = file_blobs[key] = set()
                    st.total_file_count += 1
                if blob_id not in blobs:
                    entry = repo.index.lookup(BlobType.DATA, blob_id)
                    if entry is None:
                        raise IntegrityError(f"data blob {blob_id.hex()} is not in the index")
                    st.total_size += entry.blob.plain_length
                    blobs.add(blob_id)
                    st.total_blob_count += 1
    return st
