"""Walk a snapshot's trees depth first: the one walker behind restore, ls, find, stats
and diff."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from airflow_backup.repository.tree import Node

if TYPE_CHECKING:
    from airflow_backup.repository.repo import Repository

__all__ = ["walk_nodes"]


def walk_nodes(
    repo: Repository,
    tree_id: bytes,
    prefix: bytes = b"",
    check: Callable[[bytes], None] | None = None,
) -> Iterator[tuple[bytes, Node]]:
    """Yield ``(path, node)`` for every node below ``tree_id``, depth first in name order.

    A node's path is its parent's path, ``/`` and its name (``prefix`` is the path of
    ``tree_id`` itself, empty for a snapshot's root, so paths read ``/srv/data/file``).
    ``check`` is called with every name before it is used and may raise to refuse it.
    Iterative: any depth of directories is walked. Raise IntegrityError if a tree cannot
    be loaded."""
    # A stack of iterators over the trees being walked, deepest last.
    stack: list[tuple[bytes, Iterator[Node]]] = [(prefix, iter(repo.load_tree(tree_id)))]
    while stack:
        parent, nodes = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        if check is not None:
            check(node.name)
        path = parent + b"/" + node.name
        yield path, node
        if node.type == "dir" and node.subtree is not None:
            stack.append((path, iter(repo.load_tree(node.subtree))))
