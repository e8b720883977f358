"""Compare two snapshots: which paths were added, removed or changed, restic's ``diff``.

Modifiers are restic's: ``+`` added, ``-`` removed, ``M`` content changed (file data or
symlink target), ``T`` type changed, ``U`` metadata only (mode, owner, times; reported only
when asked). Directory paths end in ``/``. Identical subtrees are skipped without loading.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node

__all__ = ["Change", "DiffResult", "DiffStats", "diff_snapshots"]


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path and its modifier (``+``, ``-``, ``M``, ``T`` or ``U``)."""

    path: str
    modifier: str


@dataclass(slots=True)
class DiffStats:
    """Counts of one side of a diff: files, dirs, other nodes and file bytes."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes: int = 0

    def add(self, node: Node) -> None:
        """Count ``node``."""
        if node.type == "file":
            self.files += 1
            self.bytes += node.size
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


def _metadata(n: Node) -> tuple[object, ...]:
    return (n.mode, n.mtime, n.uid, n.gid, n.user, n.group, n.extended_attributes)


class _Differ:
    def __init__(self, repo: Repository, metadata: bool) -> None:
        self.repo = repo
        self.metadata = metadata
        self.result = DiffResult()

    def emit(self, path: str, node: Node, modifier: str) -> None:
        self.result.changes.append(Change(path + ("/" if node.type == "dir" else ""), modifier))

    def everything(self, node: Node, path: str) -> Iterator[tuple[str, Node]]:
        yield path, node
        if node.type == "dir" and node.subtree is not None:
            for child in self.repo.load_tree(node.subtree):
                yield from self.everything(child, path + "/" + _name(child))

    def one_side(self, node: Node, path: str, modifier: str) -> None:
        stats = self.result.added if modifier == "+" else self.result.removed
        for p, n in self.everything(node, path):
            self.emit(p, n, modifier)
            stats.add(n)

    def trees(self, a: bytes | None, b: bytes | None, prefix: str) -> None:
        if a == b:
            return
        left = {n.name: n for n in (self.repo.load_tree(a) if a else [])}
        right = {n.name: n for n in (self.repo.load_tree(b) if b else [])}
        for name in sorted(left.keys() | right.keys()):
            path = prefix + "/" + name.decode("utf-8", "backslashreplace")
            old, new = left.get(name), right.get(name)
            if new is None and old is not None:
                self.one_side(old, path, "-")
            elif old is None and new is not None:
                self.one_side(new, path, "+")
            elif old is not None and new is not None:
                self.node(old, new, path)

    def node(self, old: Node, new: Node, path: str) -> None:
        if old.type != new.type:
            self.emit(path, new, "T")
            self.result.removed.add(old)
            self.result.added.add(new)
            if old.type == "dir" or new.type == "dir":
                self.trees(old.subtree if old.type == "dir" else None,
                           new.subtree if new.type == "dir" else None, path)
            return
        if old.type == "dir":
            if self.metadata and _metadata(old) != _metadata(new):
                self.emit(path, new, "U")
            self.trees(old.subtree, new.subtree, path)
            return
        content_changed = (old.content != new.content or old.linktarget != new.linktarget
                           or old.device != new.device)
        if content_changed:
            self.emit(path, new, "M")
            if new.type == "file":
                self.result.changed_files += 1
        elif self.metadata and _metadata(old) != _metadata(new):
            self.emit(path, new, "U")


def _name(node: Node) -> str:
    return node.name.decode("utf-8", "backslashreplace")


def diff_snapshots(repo: Repository, a: Snapshot, b: Snapshot, *,
                   metadata: bool = False) -> DiffResult:
    """Given two snapshots, return the paths that differ from ``a`` to ``b`` in path order.
    ``metadata`` also reports metadata-only changes (``U``). Raise IntegrityError if a tree
    cannot be loaded."""
    repo.load_index()
    differ = _Differ(repo, metadata)
    differ.trees(a.tree, b.tree, "")
    return differ.result
