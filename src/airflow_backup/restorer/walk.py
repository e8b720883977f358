"""Walk snapshot trees: list every node, or find the node at a path."""

from __future__ import annotations

from collections.abc import Iterator

from airflow_backup.errors import ConfigError, UnsafePath
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.tree import Node

__all__ = ["check_name", "find_node", "walk_tree"]


def check_name(name: bytes) -> None:
    """Raise UnsafePath unless ``name`` is a single, safe path component."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise UnsafePath(f"refusing unsafe node name {name!r} in snapshot tree")


def walk_tree(
    repo: Repository, tree_id: bytes, prefix: bytes = b""
) -> Iterator[tuple[bytes, Node]]:
    """Yield ``(path, node)`` for every node below ``tree_id`` in depth-first name order.

    Paths are absolute within the snapshot (``/srv/data/file``). Raise UnsafePath on a node
    name that could escape a restore target.
    """
    for node in repo.load_tree(tree_id):
        check_name(node.name)
        path = prefix + b"/" + node.name
        yield path, node
        if node.type == "dir" and node.subtree is not None:
            yield from walk_tree(repo, node.subtree, path)


def find_node(repo: Repository, tree_id: bytes, path: str) -> tuple[Node | None, bytes]:
    """Return the node at ``path`` inside a snapshot, and the tree holding it.

    ``/`` returns ``(None, tree_id)``: the root has no node of its own. Raise ConfigError if
    no such path exists.
    """
    parts = [p for p in path.encode("utf-8", "surrogateescape").split(b"/") if p]
    node: Node | None = None
    tree = tree_id
    for i, part in enumerate(parts):
        if node is not None:
            if node.type != "dir" or node.subtree is None:
                raise ConfigError(f"{path}: not a directory in the snapshot")
            tree = node.subtree
        match = [n for n in repo.load_tree(tree) if n.name == part]
        if not match:
            shown = "/" + b"/".join(parts[: i + 1]).decode("utf-8", "replace")
            raise ConfigError(f"{shown}: no such file or directory in the snapshot")
        node = match[0]
    return node, tree
