"""Compare two snapshots: which paths were added, removed or changed, restic's ``diff``.

Modifiers are restic's: ``+`` added, ``-`` removed, ``M`` a file's content changed (``M?``
when nothing else did: bit rot?), ``T`` type changed, ``U`` anything else about the node
changed (a symlink's target, mode, owner, times; reported only when asked). Directory paths
end in ``/``. The statistics count the blobs only one side references, as restic does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node
from airflow_backup.repository.walk import walk_nodes

__all__ = ["Change", "DiffResult", "DiffStats", "diff_snapshots"]


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path and its modifier (``+``, ``-``, ``M``, ``T`` or ``U``)."""

    path: str
    modifier: str


@dataclass(slots=True)
class DiffStats:
    """One side of a diff, as restic counts it: the files, directories and other nodes
    listed with ``+`` (or ``-``), and the data and tree blobs only that side references,
    with their plaintext bytes (blob bytes, not file sizes: shared chunks are not counted)."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    bytes: int = 0

    def add(self, node: Node) -> None:
        """Count ``node``."""
        if node.type == "file":
            self.files += 1
        elif node.type == "dir":
            self.dirs += 1
        else:
            self.others += 1


@dataclass(slots=True)
class DiffResult:
    """All changes in path order, and totals of what was added and removed."""

    changes: list[Change] = field(default_factory=list)
    added: DiffStats = field(default_factory=DiffStats)
    removed: DiffStats = field(default_factory=DiffStats)
    changed_files: int = 0


_Blob = tuple[BlobType, bytes]


def _add_blobs(blobs: set[_Blob], node: Node | None) -> None:
    """Add the blobs ``node`` references itself: a file's chunks, a directory's tree."""
    if node is None:
        return
    if node.type == "file":
        blobs.update((BlobType.DATA, b) for b in node.content or ())
    elif node.type == "dir" and node.subtree is not None:
        blobs.add((BlobType.TREE, node.subtree))


def _same_without_content(a: Node, b: Node) -> bool:
    ja, jb = a.to_json(), b.to_json()
    ja.pop("content", None)
    jb.pop("content", None)
    return ja == jb


class _Differ:
    """restic's ``diff`` comparer (cmd_diff.go): walks both trees in name order, lists
    added and removed subtrees in full, and collects the blobs each side references."""

    def __init__(self, repo: Repository, metadata: bool) -> None:
        self.repo = repo
        self.metadata = metadata
        self.result = DiffResult()
        self.before: set[_Blob] = set()
        self.after: set[_Blob] = set()
        self.common: set[_Blob] = set()

    def emit(self, path: str, modifier: str) -> None:
        self.result.changes.append(Change(path, modifier))

    def one_side(self, tree_id: bytes, prefix: str, modifier: str) -> None:
        stats = self.result.added if modifier == "+" else self.result.removed
        blobs = self.after if modifier == "+" else self.before
        # ``prefix`` ends in "/" (a directory's diff path); the walker adds the separators
        for raw, node in walk_nodes(self.repo, tree_id, prefix[:-1].encode("utf-8",
                                                                          "surrogateescape")):
            path = raw.decode("utf-8", "surrogateescape")
            self.emit(path + ("/" if node.type == "dir" else ""), modifier)
            stats.add(node)
            _add_blobs(blobs, node)

    def collect(self, tree_id: bytes) -> None:
        stack = [tree_id]
        while stack:
            for node in self.repo.load_tree(stack.pop()):
                _add_blobs(self.common, node)
                if node.type == "dir" and node.subtree is not None:
                    stack.append(node.subtree)

    def trees(self, a: bytes, b: bytes, prefix: str) -> None:
        left = {n.name: n for n in self.repo.load_tree(a)}
        right = {n.name: n for n in self.repo.load_tree(b)}
        for name in sorted(left.keys() | right.keys()):
            old, new = left.get(name), right.get(name)
            _add_blobs(self.before, old)
            _add_blobs(self.after, new)
            if old is not None and new is not None:
                self.node(old, new, prefix + _name(new))
            elif old is not None:
                path = prefix + _name(old) + ("/" if old.type == "dir" else "")
                self.emit(path, "-")
                self.result.removed.add(old)
                if old.type == "dir" and old.subtree is not None:
                    self.one_side(old.subtree, path, "-")
            elif new is not None:
                path = prefix + _name(new) + ("/" if new.type == "dir" else "")
                self.emit(path, "+")
                self.result.added.add(new)
                if new.type == "dir" and new.subtree is not None:
                    self.one_side(new.subtree, path, "+")

    def node(self, old: Node, new: Node, path: str) -> None:
        modifier = "T" if old.type != new.type else ""
        if new.type == "dir":
            path += "/"
        if old.type == "file" and new.type == "file" and old.content != new.content:
            modifier += "M"
            self.result.changed_files += 1
            if _same_without_content(old, new):
                modifier += "?"  # restic >= 0.17: new content, same metadata: bit rot?
        elif self.metadata and old.to_json() != new.to_json():
            modifier += "U"
        if modifier:
            self.emit(path, modifier)
        if old.type == "dir" and new.type == "dir" and old.subtree is not None \
                and new.subtree is not None:
            if old.subtree == new.subtree:
                self.collect(old.subtree)
            else:
                self.trees(old.subtree, new.subtree, path)

    def finish(self) -> None:
        both = self.before & self.after
        for blobs, stats in ((self.before - both - self.common, self.result.removed),
                             (self.after - both - self.common, self.result.added)):
            for blob_type, blob_id in blobs:
                if blob_type is BlobType.DATA:
                    stats.data_blobs += 1
                else:
                    stats.tree_blobs += 1
                entry = self.repo.index.lookup(blob_type, blob_id)
                if entry is not None:  # restic reports a missing one and goes on
                    stats.bytes += entry.blob.plain_length


def _name(node: Node) -> str:
    return node.name.decode("utf-8", "surrogateescape")


def diff_snapshots(repo: Repository, a: Snapshot, b: Snapshot, *,
                   metadata: bool = False) -> DiffResult:
    """Given two snapshots, return the paths that differ from ``a`` to ``b`` in path order.
    ``metadata`` also reports metadata-only changes (``U``). Raise IntegrityError if a tree
    cannot be loaded."""
    repo.load_index()
    differ = _Differ(repo, metadata)
    differ.before.add((BlobType.TREE, a.tree))
    differ.after.add((BlobType.TREE, b.tree))
    differ.trees(a.tree, b.tree, "/")
    differ.finish()
    return differ.result
