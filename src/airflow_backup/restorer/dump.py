"""Write one file of a snapshot to a binary stream (``dump``)."""

from __future__ import annotations

from typing import BinaryIO

from airflow_backup.errors import ConfigError
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.restorer.walk import find_node

__all__ = ["dump_file"]


def dump_file(repo: Repository, snapshot: Snapshot, path: str, out: BinaryIO) -> int:
    """Stream the file at ``path`` in ``snapshot`` to ``out``; return the bytes written.

    Every blob is verified before it is written. Raise ConfigError if ``path`` is missing or
    is not a regular file.
    """
    repo.load_index()
    node, _ = find_node(repo, snapshot.tree, path)
    if node is None or node.type != "file":
        kind = "the snapshot root" if node is None else f"a {node.type}"
        raise ConfigError(f"{path}: is {kind}, not a file; use 'restore' for directories")
    total = 0
    for blob_id in node.content or []:
        data = repo.load_blob(BlobType.DATA, blob_id)
        out.write(data)
        total += len(data)
    out.flush()
    return total
