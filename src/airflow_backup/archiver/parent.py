"""The parent snapshot: which files are unchanged, so their content need not be read again.

restic's rule: a regular file is unchanged when the parent's node at the same path is a file
with the same size, mtime, ctime and inode. Its content ids are then reused as they are.
"""

from __future__ import annotations

import os

from airflow_backup.errors import BackupError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository import gojson
from airflow_backup.repository.gojson import go_unquote_name
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node

__all__ = ["NO_PARENT", "ParentTree", "find_parent", "unchanged"]


class ParentTree:
    """The parent's nodes of one directory, by name (empty when there is no parent dir).

    Nodes are kept as parsed JSON and turned into :class:`Node` objects only when asked for:
    most of a parent's files are unchanged, and their JSON is all the walk compares.
    """

    __slots__ = ("_nodes", "raw", "tree_id")

    def __init__(self, tree_id: bytes | None, raw: list[JSONObject]) -> None:
        """Raise TypeError if a node's name is not a string (KeyError if it has none)."""
        self.tree_id = tree_id
        self.raw: dict[bytes, JSONObject] = {}
        for obj in raw:
            name = obj["name"]
            if not isinstance(name, str):
                raise TypeError("tree node name is not a string")
            self.raw[go_unquote_name(name)] = obj
        self._nodes: dict[bytes, Node | None] = {}

    @classmethod
    def load(cls, repo: Repository, tree_id: bytes | None) -> ParentTree:
        """Load a parent tree; a missing or unreadable one just means "no parent"."""
        if tree_id is None:
            return NO_PARENT
        try:
            obj = gojson.loads(repo.load_blob(BlobType.TREE, tree_id))
            return cls(tree_id, list(obj.get("nodes") or []))
        except (BackupError, KeyError, TypeError, ValueError, AttributeError):
            return NO_PARENT

    def node(self, name: bytes) -> Node | None:
        """Return the parent's node called ``name`` (None if absent or malformed)."""
        obj = self.raw.get(name)
        if obj is None:
            return None  # nothing cached: the shared empty tree must stay empty
        if name in self._nodes:
            return self._nodes[name]
        try:
            node: Node | None = Node.from_json(obj)
        except (KeyError, TypeError, ValueError, AttributeError):
            node = None
        self._nodes[name] = node
        return node

    def child(self, repo: Repository, name: bytes) -> ParentTree:
        """Return the parent tree of sub-directory ``name``."""
        node = self.node(name)
        if node is None or node.type != "dir":
            return NO_PARENT
        return ParentTree.load(repo, node.subtree)


NO_PARENT = ParentTree(None, [])  # shared; never caches anything


def unchanged(node: Node, old: Node | None) -> bool:
    """Return whether file ``node`` (fresh from lstat) matches the parent's ``old`` node."""
    return (
        old is not None
        and old.type == "file"
        and old.content is not None
        and old.size == node.size
        and old.mtime == node.mtime
        and old.ctime == node.ctime
        and old.inode == node.inode
    )


def find_parent(repo: Repository, hostname: str, paths: list[str]) -> Snapshot | None:
    """Return the latest snapshot of the same host and the same set of paths, or None."""
    wanted = sorted(os.path.normpath(p) for p in paths)
    best: Snapshot | None = None
    for sn in repo.list_snapshots():
        if sn.hostname != hostname or sorted(os.path.normpath(p) for p in sn.paths) != wanted:
            continue
        if best is None or (sn.time_ns, sn.id) > (best.time_ns, best.id):
            best = sn
    return best
