"""Build one source snapshot from streams, local directories and reused nodes.

A source export can be several files (a dump per database, a parallel dump directory, one
object per key), so this writer assembles a virtual tree of them with the repository's public
blob API and the archiver's chunker. The transaction is restic's: data and trees are stored,
:meth:`SnapshotWriter.prepare` flushes packs and index so the export can be read back and
validated, and only :meth:`SnapshotWriter.commit` writes the snapshot that makes it visible.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO, cast

from airflow_backup import __version__
from airflow_backup.archiver.chunker import Chunker
from airflow_backup.archiver.content import ContentSaver
from airflow_backup.archiver.events import ArchiveStats
from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot, SnapshotSummary
from airflow_backup.repository.timefmt import format_time
from airflow_backup.repository.tree import MODE_DIR, Node
from airflow_backup.restorer.dump import dump_file
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.restorer.walk import check_name, walk_tree

__all__ = ["SnapshotTreeReader", "SnapshotWriter", "WriterOptions"]

_EDGE = 64 * 1024


@dataclass(slots=True)
class WriterOptions:
    """How the snapshot is labelled; ``on_read(path, total)`` is told, as the export's
    streams are read, the bytes read so far (all streams together), for progress."""

    tags: list[str] = field(default_factory=list)
    hostname: str | None = None
    time: datetime | None = None
    on_read: Callable[[str, int], None] | None = None


class _Dir:
    def __init__(self) -> None:
        self.children: dict[str, _Dir | Node] = {}


class SnapshotWriter:
    """Collects files into a tree; implements the sources' ``ExportSink``."""

    def __init__(self, repo: Repository, options: WriterOptions | None = None) -> None:
        self.repo = repo
        self.options = options or WriterOptions()
        self.chunker = Chunker(repo.config.chunker_polynomial)
        self.stats = ArchiveStats()
        self.start = datetime.now(UTC).astimezone()
        self._root = _Dir()
        self._heads: dict[str, bytes] = {}
        self._tails: dict[str, bytes] = {}
        self._read = 0
        self.digests: dict[str, str] = {}
        self._tree: bytes | None = None
        repo.load_index()

    # ---- ExportSink ----------------------------------------------------------------------

    def _counted(self, path: str, n: int) -> None:
        self._read += n
        if self.options.on_read is not None:
            self.options.on_read(path, self._read)

    def add_stream(self, path: str, stream: BinaryIO, mtime: datetime | None = None) -> int:
        """Store ``stream`` as file ``path``; return its size."""
        node = self._new_node(path, "file", mtime)
        tap = _Tap(stream, path, self._counted if self.options.on_read else None)
        with ContentSaver(self.repo, self.chunker, workers=1) as saver:
            result = saver.save_stream(cast(BinaryIO, tap))
        content, size = result.content, result.size
        self.stats.data_blobs += result.new_blobs
        self.stats.data_added += result.data_added
        self.stats.data_added_packed += result.data_added_packed
        head, tail, sha = tap.head, tap.tail, tap.sha
        node.content, node.size = content, size
        self._heads[path], self._tails[path] = bytes(head), tail
        self.digests[path] = sha.hexdigest()
        self.stats.files_new += 1
        self.stats.total_files_processed += 1
        self.stats.total_bytes_processed += size
        self._place(path, node)
        return size

    def add_directory(self, path: str, local_dir: str) -> int:
        """Store every regular file below ``local_dir`` under ``path``; return bytes."""
        total = 0
        for dirpath, dirnames, filenames in os.walk(local_dir):
            dirnames.sort()
            rel = os.path.relpath(dirpath, local_dir)
            base = path if rel == "." else f"{path}/{rel}"
            self._ensure_dir(base)
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    with open(full, "rb") as f:
                        total += self.add_stream(f"{base}/{name}", f)
        return total

    def add_node(self, path: str, node: Node) -> None:
        """Place an already stored file node (unchanged since the parent snapshot)."""
        node.name = path.rsplit("/", 1)[-1].encode()
        self.stats.files_unmodified += 1
        self.stats.total_files_processed += 1
        self.stats.total_bytes_processed += node.size or 0
        self._place(path, node)

    def stable_token(self, label: str) -> str:
        """Return a hex token that is the same for ``label`` in every backup to this
        repository and unguessable without the repository's (encrypted) config."""
        return hashlib.sha256(f"{self.repo.config.id}\0{label}".encode()).hexdigest()[:40]

    def node(self, path: str) -> Node:
        """Return the node of a file placed in this snapshot."""
        parent, _, name = path.strip("/").rpartition("/")
        child = self._ensure_dir(parent).children.get(name)
        if not isinstance(child, Node):
            raise ConfigError(f"{path}: not a file of this export")
        return child

    def digest(self, path: str) -> str:
        """Return the SHA-256 (hex) of a file stored by :meth:`add_stream`."""
        return self.digests.get(path, "")

    def head(self, path: str) -> bytes:
        """Return up to 64 KiB from the start of a stored file."""
        return self._heads.get(path, b"")

    def tail(self, path: str) -> bytes:
        """Return up to 64 KiB from the end of a stored file."""
        return self._tails.get(path, b"")

    # ---- tree ----------------------------------------------------------------------------

    def _new_node(self, path: str, kind: str, mtime: datetime | None) -> Node:
        t = format_time(mtime or self.start)
        name = path.rsplit("/", 1)[-1].encode()
        return Node(name=name, type=kind, mode=0o644 if kind == "file" else MODE_DIR | 0o755,
                    mtime=t, atime=t, ctime=t, uid=os.getuid(), gid=os.getgid(),
                    user=_current_user(), content=[] if kind == "file" else None)

    def _ensure_dir(self, path: str) -> _Dir:
        cur = self._root
        for part in [p for p in path.split("/") if p]:
            check_name(part.encode())
            nxt = cur.children.get(part)
            if nxt is None:
                nxt = _Dir()
                cur.children[part] = nxt
            if not isinstance(nxt, _Dir):
                raise ConfigError(f"{path}: a file and a directory share this name")
            cur = nxt
        return cur

    def _place(self, path: str, node: Node) -> None:
        parent, _, name = path.strip("/").rpartition("/")
        check_name(name.encode())
        d = self._ensure_dir(parent)
        if name in d.children:
            raise ConfigError(f"{path}: stored twice in one snapshot")
        d.children[name] = node

    def _save_dir(self, d: _Dir) -> bytes:
        nodes: list[Node] = []
        for name in sorted(d.children, key=lambda n: n.encode()):
            child = d.children[name]
            if isinstance(child, _Dir):
                node = self._new_node(name, "dir", None)
                node.subtree = self._save_dir(child)
                self.stats.dirs_new += 1
                nodes.append(node)
            else:
                nodes.append(child)
        tree_id, added = self.repo.save_tree(nodes)
        if added:
            self.stats.tree_blobs += 1
            self.stats.data_added_packed += added
        return tree_id

    # ---- transaction ---------------------------------------------------------------------

    def prepare(self) -> Snapshot:
        """Store the trees and flush packs and index; return the snapshot, not yet saved.

        Its data can be read back (:class:`SnapshotTreeReader`) to validate the export.
        """
        if not self._root.children:
            raise ConfigError("the source export produced no files")
        self._tree = self._save_dir(self._root)
        self.repo.flush()
        return self._snapshot({})

    def commit(self, metadata: JSONObject) -> Snapshot:
        """Write the snapshot with ``metadata`` in its ``airflow_backup`` object."""
        if self._tree is None:
            self.prepare()
        snapshot = self._snapshot(metadata)
        self.repo.save_snapshot(snapshot)
        return snapshot

    def _snapshot(self, metadata: JSONObject) -> Snapshot:
        assert self._tree is not None
        end = datetime.now(UTC).astimezone()
        summary = SnapshotSummary(
            backup_start=format_time(self.start), backup_end=format_time(end),
            **{k: getattr(self.stats, k) for k in (
                "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
                "dirs_unmodified", "data_blobs", "tree_blobs", "data_added",
                "data_added_packed", "total_files_processed", "total_bytes_processed")})
        return Snapshot(
            time=format_time(self.options.time or self.start), tree=self._tree,
            paths=["/" + n for n in sorted(self._root.children)],
            hostname=self.options.hostname or socket.gethostname(),
            username=_current_user(), uid=os.getuid(), gid=os.getgid(),
            tags=list(self.options.tags), program_version=f"airflow-backup {__version__}",
            summary=summary, extra={"airflow_backup": metadata} if metadata else {})


class SnapshotTreeReader:
    """Reads the files of a snapshot; implements the sources' ``SnapshotReader``."""

    def __init__(self, repo: Repository, snapshot: Snapshot) -> None:
        self.repo = repo
        self.snapshot = snapshot
        repo.load_index()

    def nodes(self, prefix: str = "") -> list[tuple[str, Node]]:
        """Return ``(path, node)`` for the regular files below ``prefix`` (no leading /)."""
        want = prefix.strip("/")
        out = []
        for raw, node in walk_tree(self.repo, self.snapshot.tree):
            path = raw.decode("utf-8", "surrogateescape").lstrip("/")
            if node.type == "file" and (not want or path == want
                                        or path.startswith(want + "/")):
                out.append((path, node))
        return out

    def files(self, prefix: str = "") -> list[str]:
        """Return the paths of the regular files below ``prefix``."""
        return [p for p, _ in self.nodes(prefix)]

    def copy_to(self, path: str, out: BinaryIO) -> int:
        """Write file ``path`` to ``out``; every blob is verified first."""
        return dump_file(self.repo, self.snapshot, "/" + path.strip("/"), out)

    def read_bytes(self, path: str) -> bytes:
        """Return the content of file ``path``."""
        data = bytearray()
        node = dict(self.nodes(path)).get(path.strip("/"))
        if node is None:
            raise ConfigError(f"{path}: not a file in snapshot {self.snapshot.short_id}")
        for blob_id in node.content or []:
            data += self.repo.load_blob(BlobType.DATA, blob_id)
        return bytes(data)

    def extract(self, path: str, local_dir: str) -> None:
        """Restore directory ``path`` as ``local_dir/<its name>``."""
        # A subpath restore puts the directory's contents into the target (restic >= 0.16's
        # SNAPSHOT:SUBFOLDER), so the target is the directory itself.
        path = "/" + path.strip("/")
        Restorer(self.repo).restore(self.snapshot, RestoreOptions(
            target=os.path.join(local_dir, os.path.basename(path)), subpath=path))


class _Tap:
    """Passes a stream through, keeping its SHA-256 and its first and last 64 KiB, and
    telling ``on_read`` how many bytes of ``path`` each read returned."""

    def __init__(self, stream: BinaryIO, path: str = "",
                 on_read: Callable[[str, int], None] | None = None) -> None:
        self.stream = stream
        self.path, self.on_read = path, on_read
        self.sha = hashlib.sha256()
        self.head = bytearray()
        self.tail = b""

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            if self.on_read is not None:
                self.on_read(self.path, len(data))
            self.sha.update(data)
            if len(self.head) < _EDGE:
                self.head += data[: _EDGE - len(self.head)]
            self.tail = (self.tail + data[-_EDGE:])[-_EDGE:]
        return data


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
