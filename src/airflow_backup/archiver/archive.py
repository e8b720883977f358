"""Back up paths into a snapshot, the way restic lays them out.

The absolute path of every target is kept: backing up ``/srv/data`` gives a root tree holding
``srv``, holding ``data``. Intermediate directories carry their real metadata. Unreadable items
are reported through the events and skipped; the snapshot then records that it is partial.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import stat as st
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from airflow_backup import __version__
from airflow_backup.archiver.chunker import Chunker
from airflow_backup.archiver.events import ArchiveEvents, ArchiveStats
from airflow_backup.archiver.nodes import node_from_stat
from airflow_backup.archiver.patterns import PatternSet
from airflow_backup.errors import ConfigError
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot, SnapshotSummary
from airflow_backup.repository.timefmt import format_time
from airflow_backup.repository.tree import Node

__all__ = ["Archiver", "BackupOptions", "BackupResult"]

_MAX_RECORDED_ERRORS = 100


@dataclass(slots=True)
class BackupOptions:
    """What a backup stores and how the snapshot is labelled."""

    paths: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    hostname: str | None = None
    time: datetime | None = None
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class BackupResult:
    """The saved snapshot and the items that could not be read (empty if complete)."""

    snapshot: Snapshot
    stats: ArchiveStats

    @property
    def partial(self) -> bool:
        """Return whether some items were skipped because they could not be read."""
        return bool(self.stats.errors)


class _VirtualDir:
    """An intermediate directory on the way from ``/`` to a backup target."""

    def __init__(self, path: bytes) -> None:
        self.path = path
        self.children: dict[bytes, _VirtualDir | bytes] = {}


class Archiver:
    """Saves files and streams into a repository and writes the snapshot."""

    def __init__(self, repo: Repository, events: ArchiveEvents | None = None) -> None:
        self.repo = repo
        self.events = events or ArchiveEvents()
        self.chunker = Chunker(repo.config.chunker_polynomial)
        self.stats = ArchiveStats()
        self._excludes = PatternSet([])

    # ---- public --------------------------------------------------------------------------

    def backup(self, options: BackupOptions) -> BackupResult:
        """Back up ``options.paths``; return the snapshot. Raise ConfigError if a target path
        does not exist. Unreadable items below the targets are skipped and recorded."""
        if not options.paths:
            raise ConfigError("nothing to back up: give at least one path")
        targets = sorted({os.fsencode(os.path.abspath(p)) for p in options.paths})
        for t in targets:
            if not os.path.lexists(t):
                raise ConfigError(f"{os.fsdecode(t)}: no such file or directory")
        self._excludes = PatternSet(options.excludes)
        start = datetime.now(UTC).astimezone()
        self.repo.load_index()
        root = _VirtualDir(b"/")
        for t in targets:
            self._place(root, t)
        tree_id = self._save_virtual(root)
        return self._finish(options, tree_id, [os.fsdecode(t) for t in targets], start)

    def backup_stream(self, stream: BinaryIO, filename: str, options: BackupOptions,
                      before_snapshot: Callable[[], None] | None = None) -> BackupResult:
        """Back up a byte stream as one file named ``filename`` at the snapshot's root.

        ``before_snapshot`` runs after the data is stored and before the snapshot is written;
        if it raises, no snapshot is saved (used to check a producer's exit status).
        """
        if not filename or "/" in filename or filename in (".", ".."):
            raise ConfigError(f"invalid stdin file name {filename!r}")
        start = datetime.now(UTC).astimezone()
        self.repo.load_index()
        node = Node(name=filename.encode(), type="file", mode=0o644,
                    mtime=format_time(start), atime=format_time(start),
                    ctime=format_time(start), uid=os.getuid(), gid=os.getgid(),
                    user=_current_user(), content=[])
        node.size = self._save_content(stream, node)
        self.stats.files_new += 1
        self.stats.total_files_processed += 1
        self.events.item_done("/" + filename, "file", node.size, self.stats)
        tree_id = self._save_tree([node])
        if before_snapshot is not None:
            before_snapshot()
        return self._finish(options, tree_id, ["/" + filename], start)

    # ---- tree walking --------------------------------------------------------------------

    def _place(self, root: _VirtualDir, target: bytes) -> None:
        parts = [p for p in target.split(b"/") if p]
        cur = root
        for i, part in enumerate(parts[:-1]):
            nxt = cur.children.get(part)
            if isinstance(nxt, bytes):
                return  # a parent directory is itself a target and includes this one
            if nxt is None:
                nxt = _VirtualDir(b"/" + b"/".join(parts[: i + 1]))
                cur.children[part] = nxt
            cur = nxt
        if parts:
            cur.children[parts[-1]] = target
        else:
            root.children = {}
            root.path = b"/"

    def _save_virtual(self, vdir: _VirtualDir) -> bytes:
        if not vdir.children:  # backing up "/" itself
            nodes = self._read_dir(b"/")
            return self._save_tree(nodes)
        nodes = []
        for name in sorted(vdir.children):
            child = vdir.children[name]
            if isinstance(child, bytes):
                node = self._save_path(name, child)
                if node is not None:
                    nodes.append(node)
                continue
            try:
                s = os.lstat(child.path)
            except OSError as exc:
                self._error(child.path, exc)
                continue
            node = node_from_stat(name, child.path, s)
            node.subtree = self._save_virtual(child)
            self.stats.dirs_new += 1
            nodes.append(node)
        return self._save_tree(nodes)

    def _save_path(self, name: bytes, path: bytes) -> Node | None:
        """Save one file system item (recursing into directories); None if it was skipped."""
        if self._excludes and self._excludes.matches(path):
            return None
        try:
            s = os.lstat(path)
            node = node_from_stat(name, path, s)
            if node.type == "file":
                node.size = self._save_file(path, node, s)
                self.stats.files_new += 1
                self.stats.total_files_processed += 1
                self.stats.total_bytes_processed += node.size
            elif node.type == "dir":
                node.subtree = self._save_tree(self._read_dir(path))
                self.stats.dirs_new += 1
        except OSError as exc:
            self._error(path, exc)
            return None
        self.events.item_done(os.fsdecode(path), node.type, node.size, self.stats)
        return node

    def _read_dir(self, path: bytes) -> list[Node]:
        with os.scandir(path) as it:
            names = sorted(e.name for e in it)
        nodes = []
        prefix = path.rstrip(b"/") + b"/"
        for name in names:
            node = self._save_path(name, prefix + name)
            if node is not None:
                nodes.append(node)
        return nodes

    # ---- content -------------------------------------------------------------------------

    def _save_file(self, path: bytes, node: Node, s: os.stat_result) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb", buffering=0) as f:
            if not st.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{os.fsdecode(path)} changed type while being read")
            return self._save_content(f, node)

    def _save_content(self, stream: BinaryIO, node: Node) -> int:
        content: list[bytes] = []
        size = 0
        for chunk in self.chunker.chunks(stream):
            blob_id = hashlib.sha256(chunk).digest()
            _, added = self.repo.save_blob(BlobType.DATA, chunk, blob_id)
            if added:
                self.stats.data_blobs += 1
                self.stats.data_added += len(chunk)
                self.stats.data_added_packed += added
            content.append(blob_id)
            size += len(chunk)
        node.content = content
        return size

    def _save_tree(self, nodes: list[Node]) -> bytes:
        tree_id, added = self.repo.save_tree(nodes)
        if added:
            self.stats.tree_blobs += 1
            self.stats.data_added_packed += added
        return tree_id

    def _error(self, path: bytes, exc: OSError) -> None:
        message = exc.strerror or str(exc)
        self.stats.errors.append((os.fsdecode(path), message))
        self.events.item_error(os.fsdecode(path), message)

    # ---- snapshot ------------------------------------------------------------------------

    def _finish(self, options: BackupOptions, tree_id: bytes, paths: list[str],
                start: datetime) -> BackupResult:
        end = datetime.now(UTC).astimezone()
        summary = SnapshotSummary(
            backup_start=format_time(start), backup_end=format_time(end),
            **{k: getattr(self.stats, k) for k in (
                "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
                "dirs_unmodified", "data_blobs", "tree_blobs", "data_added",
                "data_added_packed", "total_files_processed", "total_bytes_processed")},
        )
        extra: dict[str, object] = {}
        meta = dict(options.metadata)
        if self.stats.errors:
            meta["partial"] = True
            meta["errors"] = [{"path": p, "error": e}
                              for p, e in self.stats.errors[:_MAX_RECORDED_ERRORS]]
            meta["error_count"] = len(self.stats.errors)
        if meta:
            extra["airflow_backup"] = meta
        snapshot = Snapshot(
            time=format_time(options.time or start),
            tree=tree_id,
            paths=paths,
            hostname=options.hostname or socket.gethostname(),
            username=_current_user(),
            uid=os.getuid(),
            gid=os.getgid(),
            excludes=list(options.excludes),
            tags=list(options.tags),
            program_version=f"airflow-backup {__version__}",
            summary=summary,
            extra=extra,
        )
        self.repo.save_snapshot(snapshot)
        return BackupResult(snapshot, self.stats)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
