"""The walk's bookkeeping: directories on the way to the targets, and directories whose
tree is not written yet with the entries they wait for."""

from __future__ import annotations

from concurrent.futures import Future

from airflow_backup.archiver.content import ContentResult, SmallFile
from airflow_backup.archiver.known import Walked
from airflow_backup.archiver.parent import ParentTree
from airflow_backup.archiver.targets import Target
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.tree import Node

__all__ = ["Entry", "PendingDir", "VirtualDir", "place", "settle"]


class VirtualDir:
    """An intermediate directory on the way from ``/`` to a backup target."""

    def __init__(self, path: bytes) -> None:
        self.path = path
        self.children: dict[bytes, VirtualDir | bytes] = {}
        self.bases: dict[bytes, bytes] = {}  # (the root's) top-level name -> its directory


# A kept parent node is its JSON object; see ParentTree.
Entry = (Node | JSONObject | tuple[Node, "Future[ContentResult]"] | tuple[Node, SmallFile]
         | tuple[Node, "PendingDir"] | tuple[Node, ContentResult] | tuple[Node, BaseException])


def settle(entries: list[Entry], index: int, node: Node, fut: Future[ContentResult]) -> None:
    """Replace a finished future in a directory's entries by its result (or exception)."""
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        entries[index] = (node, exc)
    else:
        entries[index] = (node, fut.result())


class PendingDir:
    """A directory whose tree blob is not written yet."""

    __slots__ = ("checked", "entries", "parent", "path", "tree_id", "walked")

    def __init__(self, path: bytes, parent: ParentTree) -> None:
        self.path = path
        self.parent = parent
        self.entries: list[Entry] = []
        self.tree_id: bytes | None = None
        self.checked = 0  # entries[:checked] are known to be complete
        self.walked: Walked | None = None  # its listing, to remember it (KnownDirs)

    def ready(self) -> bool:
        """Return whether every file of this directory has been saved."""
        entries = self.entries
        while self.checked < len(entries):
            entry = entries[self.checked]
            if isinstance(entry, tuple) and isinstance(entry[1], (SmallFile, Future)) \
                    and not entry[1].done():
                return False
            self.checked += 1
        return True


def place(root: VirtualDir, target: bytes | Target) -> None:
    """Add backup target ``target`` below ``root``, with the virtual directories on the way
    (an absolute path, or a :class:`~airflow_backup.archiver.targets.Target` whose ``parts``
    say where it goes in the snapshot); a target inside another target adds nothing, and
    ``/`` makes ``root`` itself the target. A top-level name already taken by a target from
    another directory gets restic's suffix: ``data``, ``data-1``, ``data-2``."""
    if isinstance(target, bytes):
        target = Target(target, tuple(p for p in target.split(b"/") if p), b"/")
    parts = list(target.parts)
    if not parts:
        root.children = {}
        return
    name, i = parts[0], 0
    while name in root.children and root.bases.get(name, target.base) != target.base:
        i += 1
        name = parts[0] + b"-%d" % i
    root.bases[name] = target.base
    base = target.base.rstrip(b"/")
    parts[0] = name
    cur = root
    for i, part in enumerate(parts[:-1]):
        nxt = cur.children.get(part)
        if isinstance(nxt, bytes):
            return  # a parent directory is itself a target and includes this one
        if nxt is None:
            real = [target.parts[0], *parts[1 : i + 1]]
            nxt = VirtualDir(base + b"/" + b"/".join(real))
            cur.children[part] = nxt
        cur = nxt
    cur.children[parts[-1]] = target.real
