"""Walk snapshot trees: list every node, or find the node at a path; show names safely."""

from __future__ import annotations

from collections.abc import Iterator

from airflow_backup.errors import ConfigError, UnsafePath
from airflow_backup.repository.names import show_name
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.tree import Node
from airflow_backup.repository.walk import walk_nodes

__all__ = ["check_name", "find_node", "show_name", "unsafe_reason", "walk_tree"]


def unsafe_reason(name: bytes) -> str | None:
    """Return why ``name`` is not a single, safe path component, or None if it is one."""
    if not name:
        return "the name is empty"
    if name in (b".", b".."):
        return f'"{show_name(name)}" is not a name'
    if b"\0" in name:
        return "the name contains a NUL byte"
    if b"/" in name:
        what = "is an absolute path" if name.startswith(b"/") else "contains '/'"
        return f'the name "{show_name(name)}" {what}'
    return None


def check_name(name: bytes) -> None:
    """Raise UnsafePath unless ``name`` is a single, safe path component."""
    reason = unsafe_reason(name)
    if reason is not None:
        raise UnsafePath(f"refusing unsafe node name in snapshot tree: {reason}")


def walk_tree(
    repo: Repository, tree_id: bytes, prefix: bytes = b""
) -> Iterator[tuple[bytes, Node]]:
    """Yield ``(path, node)`` for every node below ``tree_id`` in depth-first name order.

    Paths are absolute within the snapshot (``/srv/data/file``). Raise UnsafePath on a node
    name that could escape a restore target. Iterative: any depth of directories is walked.
    """
    return walk_nodes(repo, tree_id, prefix, check_name)


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
            shown = "/" + show_name(b"/".join(parts[: i + 1]))
            raise ConfigError(f"{shown}: no such file or directory in the snapshot")
        node = match[0]
    return node, tree
