"""Back up paths into a snapshot, the way restic lays them out.

The absolute path of every target is kept: backing up ``/srv/data`` gives a root tree holding
``srv``, holding ``data``; a relative target keeps the path as given (``cd /srv && backup
data`` gives ``/data``; see :mod:`airflow_backup.archiver.targets`). Intermediate directories
carry their real metadata; the snapshot's ``paths`` are always absolute.

The walk runs in the calling thread: it lists directories in name order, stats entries and
hands regular files to a :class:`ContentSaver` pool. Directories wait in post-order (children
before parents) until their files are saved; they are then encoded as tree blobs, so trees are
built deterministically while reading overlaps. Files unchanged since the parent snapshot are
not read at all, and a directory whose nodes equal the parent's reuses its tree id; a whole
subtree unchanged since the last backup (:mod:`airflow_backup.archiver.known`) is not even
compared with the parent.
Unreadable items are reported through the events and skipped; the snapshot records that it is
partial.
"""

from __future__ import annotations

import errno
import functools
import getpass
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import BinaryIO, cast

from airflow_backup import __version__
from airflow_backup.archiver.chunker import MIN_SIZE, Chunker
from airflow_backup.archiver.content import ContentResult, ContentSaver
from airflow_backup.archiver.events import ArchiveEvents, ArchiveStats
from airflow_backup.archiver.exclude import Exclusions
from airflow_backup.archiver.known import DirCache, KnownDirs, Walked, dir_cache_path
from airflow_backup.archiver.nodes import StatLike, node_from_stat, same_file_node
from airflow_backup.archiver.options import BackupOptions, BackupResult
from airflow_backup.archiver.parent import NO_PARENT, ParentTree, find_parent, unchanged
from airflow_backup.archiver.pending import PendingDir, VirtualDir, place, settle
from airflow_backup.archiver.targets import Target, resolve_targets, snapshot_paths
from airflow_backup.archiver.warm import MetadataWarmer, read_listing
from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import find_snapshot
from airflow_backup.repository.snapshot import Snapshot, SnapshotSummary
from airflow_backup.repository.timefmt import format_time
from airflow_backup.repository.tree import Node
from airflow_backup.storage.base import FileType, Handle, is_strongly_consistent

__all__ = ["Archiver", "BackupOptions", "BackupResult"]

_MAX_RECORDED_ERRORS = 100


#: A directory being walked: its PendingDir, its remaining entries, its node and its parent.
_Frame = tuple[PendingDir, Iterator[tuple[bytes, bytes, StatLike | None]], Node | None,
               PendingDir | None]


class Archiver:
    """Saves files and streams into a repository and writes the snapshot."""

    def __init__(self, repo: Repository, events: ArchiveEvents | None = None,
                 warmed: MetadataWarmer | None = None) -> None:
        """``warmed``: a warm-up walk of the backup's paths whose directory listings and
        ``lstat`` results the walk takes instead of reading them again (cold unchanged 1 GiB
        re-backup: see docs/performance.md)."""
        self.repo = repo
        self._warmed = warmed
        self.events = events or ArchiveEvents()
        self.chunker = Chunker(repo.config.chunker_polynomial)
        self.stats = ArchiveStats()
        self._exclusions = Exclusions()
        self._with_atime = False
        self._queue: deque[PendingDir] = deque()
        self._saver: ContentSaver | None = None
        self._known: KnownDirs | None = None
        self._check_known = False

    # ---- public --------------------------------------------------------------------------

    def backup(self, options: BackupOptions) -> BackupResult:
        """Back up ``options.paths``; return the snapshot. A target that does not exist is
        skipped and recorded like an unreadable item (the snapshot is partial, as restic's);
        raise ConfigError only if none exists. Unreadable items below the targets are
        skipped and recorded."""
        if not options.paths:
            raise ConfigError("nothing to back up: give at least one path")
        paths = snapshot_paths(list(options.paths))
        if "/" in paths:
            paths = ["/"]
            targets = [Target(b"/", (), b"/")]
        else:
            try:
                targets = resolve_targets(list(options.paths))
            except OSError as exc:  # "." or ".." that cannot be listed
                raise ConfigError(f"{exc.filename}: {exc.strerror or exc}") from exc
        if not targets:  # "." of an empty directory
            raise ConfigError(f"{paths[0]}: the directory is empty, nothing to back up")
        missing = [t for t in targets if not os.path.lexists(t.real)]
        if len(missing) == len(targets):
            raise ConfigError(f"{os.fsdecode(missing[0].real)}: no such file or directory")
        targets = [t for t in targets if t not in missing]
        for t in missing:
            self._error(t.real, FileNotFoundError(errno.ENOENT, "no such file or directory"))
        self._exclusions = Exclusions.of(options, warn=self.events.warning)
        if self._warmed is not None and self._warmed.exclusions.key != self._exclusions.key:
            self._warmed.forget()  # its listings were read under other rules
            self._warmed = None
        self._with_atime = options.with_atime
        start = datetime.now(UTC).astimezone()
        parent = self._index_and_parent(options, paths)
        if parent is None and self._warmed is not None:
            # Every file is read anyway: the listings would save little time and hold memory
            # through the whole backup.
            self._warmed.forget()
            self._warmed = None
        self._known = self._known_dirs(options, paths, parent)
        self._check_known = parent is not None
        root = VirtualDir(b"/")
        for t in targets:
            place(root, t)
        warmed = self._warmed
        with ContentSaver(self.repo, self.chunker, options.workers) as saver:
            self._saver = saver
            parent_root = ParentTree.load(self.repo, parent.tree if parent else None)
            top = self._walk_virtual(root, parent_root)
            self._finalize(block=True)
        if warmed is not None:  # marker files met in the listings the walk took from it
            self._exclusions.adopt_warnings(warmed.exclusions)
        assert top.tree_id is not None
        result = self._finish(options, top.tree_id, paths, start, parent)
        if self._known is not None and not self.stats.errors:
            # Skipped: the parent holds the very same trees.
            self._known.save(result.snapshot.id if result.saved else (parent.id if parent
                                                                         else ""))
        return result

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
        now = format_time(start)
        node = Node(name=filename.encode(), type="file", mode=0o644, mtime=now, atime=now,
                    ctime=now, uid=os.getuid(), gid=os.getgid(), user=_current_user(),
                    content=[])
        with ContentSaver(self.repo, self.chunker, 1) as saver:
            # save_stream only calls readinto, which the wrapper has.
            counted = cast(BinaryIO, _CountedStream(stream, "/" + filename, self.events))
            result = saver.save_stream(counted)
        node.content, node.size = result.content, result.size
        self._count_file(result, "new")
        self.events.item_done("/" + filename, "file", node.size, self.stats)
        tree_id = self._save_tree([node])
        if before_snapshot is not None:
            before_snapshot()
        return self._finish(options, tree_id, ["/" + filename], start, None)

    # ---- walking -------------------------------------------------------------------------

    def _index_and_parent(self, options: BackupOptions, paths: list[str]) -> Snapshot | None:
        """Load the index and find the parent snapshot (:meth:`_parent`); return the parent.
        On a remote store the two run at the same time: each is a listing and file loads,
        round trips that need not wait for each other (then what either raised is raised
        once both are done). On a local one they run one after the other: both are CPU
        work that threads would only contend for the GIL."""
        if is_strongly_consistent(self.repo.storage):
            self.repo.load_index()
            return self._parent(options, paths)
        with ThreadPoolExecutor(1, thread_name_prefix="index") as pool:
            loading = pool.submit(self.repo.load_index)
            try:
                parent = self._parent(options, paths)
            except BaseException:
                wait([loading])
                raise
            loading.result()
        return parent

    def _parent(self, options: BackupOptions, paths: list[str]) -> Snapshot | None:
        if options.force:
            return None
        if options.parent:
            return find_snapshot(self.repo, options.parent)
        return find_parent(self.repo, options.hostname or socket.gethostname(), paths)

    def _known_dirs(self, options: BackupOptions, paths: list[str],
                    parent: Snapshot | None) -> KnownDirs | None:
        if options.dir_cache is None or options.with_atime:
            return None
        scope = DirCache.scope(options.hostname or socket.gethostname(), paths,
                               options.excludes, self._exclusions.scope)
        storage = self.repo.storage

        def snapshot_exists(sid: str) -> bool:
            # The directory cache names the snapshot the last backup wrote: usually the
            # parent, loaded a moment ago, so no request is needed to know it is there.
            return ((parent is not None and sid == parent.id)
                    or storage.exists(Handle(FileType.SNAPSHOT, sid)))

        cache = DirCache.load(dir_cache_path(options.dir_cache, self.repo, scope),
                              self.repo.key, scope, snapshot_exists)
        warmed = self._warmed
        return KnownDirs(self.repo, cache, self._exclusions,
                         warmed.take_listing if warmed is not None else lambda _path: None)

    def _walk_virtual(self, vdir: VirtualDir, parent: ParentTree) -> PendingDir:
        pending = PendingDir(vdir.path, parent)
        if not vdir.children:  # backing up "/" itself
            self._walk_entries(pending, b"/")
        for name in sorted(vdir.children):
            child = vdir.children[name]
            if isinstance(child, bytes):
                self._walk_target(pending, name, child)
                continue
            try:
                s = os.lstat(child.path)
                node = node_from_stat(name, child.path, s, self._with_atime)
            except OSError as exc:
                self._error(child.path, exc)
                continue
            sub = self._walk_virtual(child, parent.child(self.repo, name))
            pending.entries.append((node, sub))
        self._queue.append(pending)
        self._finalize(block=False)
        return pending

    def _listing(self, pending: PendingDir, path: bytes
                 ) -> list[tuple[bytes, bytes, StatLike | None]]:
        """Return (name, path, stat if known) of the entries of directory ``path``, in name
        order. Raise OSError if it cannot be listed."""
        prefix = path.rstrip(b"/") + b"/"
        known = self._known
        listing = known.take_listing(path) if known is not None else None
        if listing is None and self._warmed is not None:
            listing = self._warmed.take_listing(path)
        if listing is None and known is not None:
            listing = read_listing(path, self._exclusions)
        if listing is not None:  # its entries are those the exclusion rules keep
            if known is not None:
                pending.walked = Walked.of(listing)
            return [(name, prefix + name, s) for name, s in listing]
        with os.scandir(path) as it:
            names = sorted(e.name for e in it)
        exclusions = self._exclusions
        if not exclusions:
            return [(name, prefix + name, None) for name in names]
        tags = exclusions.tags(path, names)
        return [(name, prefix + name, None) for name in names
                if not exclusions.rejects_name(prefix + name, name, tags)]

    def _walk_target(self, pending: PendingDir, name: bytes, path: bytes) -> None:
        """Add the backup target ``path`` (entry ``name`` of ``pending``) and, for a
        directory, everything below it."""
        if self._exclusions and self._exclusions.rejects_target(path):
            return
        frame = self._enter(pending, name, path, None)
        if frame is not None:
            self._walk([frame])

    def _enter(self, pending: PendingDir, name: bytes, path: bytes,
               s: StatLike | None) -> _Frame | None:
        """Add entry ``name`` of ``pending``; for a directory to walk, return its frame (None
        for anything else, or a directory that cannot be listed, which is recorded)."""
        descend = self._add_entry(pending, name, path, s)
        if descend is None:
            return None
        node, sub = descend
        try:
            listing = self._listing(sub, path)
        except OSError as exc:
            self._error(path, exc)
            return None
        return sub, iter(listing), node, pending

    def _walk_entries(self, pending: PendingDir, path: bytes) -> None:
        """Walk everything below directory ``path`` (into ``pending``)."""
        self._walk([(pending, iter(self._listing(pending, path)), None, None)])

    def _walk(self, stack: list[_Frame]) -> None:
        """Walk depth-first, names in order, with an explicit stack (any depth the file
        system allows; no recursion). A directory is queued for writing, and added to its
        parent, once all its entries were walked (post-order)."""
        while stack:
            current, entries, node, parent = stack[-1]
            for name, full, s in entries:
                frame = self._enter(current, name, full, s)
                if frame is not None:
                    stack.append(frame)
                    break
            else:
                stack.pop()
                if parent is not None and node is not None:
                    self._queue.append(current)
                    parent.entries.append((node, current))
                    self._finalize(block=False)

    def _add_entry(self, pending: PendingDir, name: bytes, path: bytes,
                   s: StatLike | None = None) -> tuple[Node, PendingDir] | None:
        """Add the entry ``name`` of ``pending`` (one the exclusion rules keep by its name);
        return (node, its PendingDir) for a directory the walk must descend into, else None.
        """
        try:
            if s is None:
                s = os.lstat(path)
            if self._exclusions and self._exclusions.rejects_stat(path, s):
                return None
            if not self._with_atime:
                kept = pending.parent.raw.get(name)
                if same_file_node(kept, s):
                    assert kept is not None
                    self._count_unmodified(s.st_size)
                    pending.entries.append(kept)
                    return None
            node = node_from_stat(name, path, s, self._with_atime)
        except OSError as exc:
            self._error(path, exc)
            return None
        if node.type == "file":
            old = pending.parent.node(name)
            if unchanged(node, old):
                assert old is not None
                node.content = old.content
                self._count_unmodified(node.size)
                pending.entries.append(node)
                return None
            assert self._saver is not None
            if s.st_size < MIN_SIZE:
                pending.entries.append((node, self._saver.submit_small(path, s.st_size)))
                return None
            fut = self._saver.submit_file(path, s.st_size)
            index = len(pending.entries)
            pending.entries.append((node, fut))
            # Once saved, keep only the result: thousands of finished futures (each with its
            # own Condition) would otherwise wait for their directory's turn.
            fut.add_done_callback(functools.partial(settle, pending.entries, index, node))
        elif node.type == "dir":
            if self._reuse_known(pending, node, path):
                return None
            return node, PendingDir(path, pending.parent.child(self.repo, name))
        else:
            pending.entries.append(node)
            self.events.item_done(os.fsdecode(path), node.type, 0, self.stats)
        return None

    def _reuse_known(self, pending: PendingDir, node: Node, path: bytes) -> bool:
        """Add directory ``path`` with the tree remembered for it if it is unchanged (see
        :mod:`airflow_backup.archiver.known`); return whether it was."""
        if self._known is None or not self._check_known:
            return False
        known = self._known.check(path)
        if known is None:
            return False
        self._known.reused(path, known)
        sub = PendingDir(path, NO_PARENT)
        sub.tree_id = known.tree_id
        pending.entries.append((node, sub))
        s = self.stats
        s.files_unmodified += known.files
        s.total_files_processed += known.files
        s.total_bytes_processed += known.size
        s.dirs_unmodified += known.dirs
        return True

    # ---- finalizing trees ----------------------------------------------------------------

    def _finalize(self, block: bool) -> None:
        """Write the trees of queued directories whose files are all saved (all of them when
        ``block``), oldest first: post-order guarantees children are written before parents.
        """
        if block and self._saver is not None:
            self._saver.flush()
        while self._queue:
            pending = self._queue[0]
            if not block and not pending.ready():
                return
            self._queue.popleft()
            self._write_dir(pending)

    def _write_dir(self, pending: PendingDir) -> None:
        nodes: list[Node | JSONObject] = []
        for entry in pending.entries:
            if isinstance(entry, (Node, dict)):
                nodes.append(entry)
                continue
            node, work = entry
            path = pending.path.rstrip(b"/") + b"/" + node.name
            if isinstance(work, PendingDir):
                if work.tree_id is None:
                    continue
                node.subtree = work.tree_id
                old = pending.parent.node(node.name)
                if old is None or old.type != "dir":
                    self.stats.dirs_new += 1
                elif old.subtree == node.subtree:
                    self.stats.dirs_unmodified += 1
                else:
                    self.stats.dirs_changed += 1
                nodes.append(node)
                continue
            try:
                if isinstance(work, BaseException):
                    raise work
                result = work if isinstance(work, ContentResult) else work.result()
            except OSError as exc:
                self._error(path, exc)
                continue
            node.content, node.size = result.content, result.size
            kind = "changed" if node.name in pending.parent.raw else "new"
            self._count_file(result, kind)
            self.events.item_done(os.fsdecode(path), "file", node.size, self.stats)
            nodes.append(node)
        parent = pending.parent
        # Kept parent nodes (JSON) are equal to the parent's by construction; names are unique
        # and sorted, so equal counts and equal nodes mean an identical tree.
        if parent.tree_id is not None and len(parent.raw) == len(nodes) and all(
            isinstance(n, dict) or parent.node(n.name) == n for n in nodes
        ):
            pending.tree_id = parent.tree_id  # identical to the parent's: no re-encoding
        else:
            pending.tree_id = self._save_tree(nodes)
        if self._known is not None and pending.walked is not None:
            self._known.written(pending.path, pending.walked, pending.tree_id)
            pending.walked = None
        # Only the tree id is needed from now on. The parent directory keeps this object
        # until its own tree is written, and with it (before this) every node below it:
        # memory grew with every file for the whole backup.
        pending.entries = []
        pending.parent = NO_PARENT

    # ---- bookkeeping ---------------------------------------------------------------------

    def _count_file(self, result: ContentResult, kind: str) -> None:
        s = self.stats
        if kind == "new":
            s.files_new += 1
        else:
            s.files_changed += 1
        s.total_files_processed += 1
        s.total_bytes_processed += result.size
        s.data_blobs += result.new_blobs
        s.data_added += result.data_added
        s.data_added_packed += result.data_added_packed

    def _count_unmodified(self, size: int) -> None:
        s = self.stats
        s.files_unmodified += 1
        s.total_files_processed += 1
        s.total_bytes_processed += size

    def _save_tree(self, nodes: list[Node | JSONObject]) -> bytes:
        tree_id, added = self.repo.save_tree(nodes)
        if added:
            self.stats.tree_blobs += 1
            self.stats.data_added_packed += added
        return tree_id

    def _error(self, path: bytes, exc: OSError) -> None:
        message = exc.strerror or str(exc)
        self.stats.errors.append((os.fsdecode(path), message))
        self.events.item_error(os.fsdecode(path), message)

    def _finish(self, options: BackupOptions, tree_id: bytes, paths: list[str],
                start: datetime, parent: Snapshot | None) -> BackupResult:
        end = datetime.now(UTC).astimezone()
        summary = SnapshotSummary(backup_start=format_time(start), backup_end=format_time(end),
                                  **self.stats.counters())
        extra: JSONObject = {}
        meta: JSONObject = dict(options.metadata)
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
            parent=bytes.fromhex(parent.id) if parent else None,
            program_version=f"airflow-backup {__version__}",
            summary=summary,
            extra=extra,
        )
        if options.skip_if_unchanged and parent is not None and parent.tree == tree_id:
            # restic's --skip-if-unchanged: the parent already is this snapshot.
            self.repo.flush()
            return BackupResult(snapshot, self.stats, saved=False)
        self.repo.save_snapshot(snapshot)
        return BackupResult(snapshot, self.stats)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


class _CountedStream:
    """A stream that tells ``events.stream_read`` how much has been read (progress)."""

    def __init__(self, stream: BinaryIO, path: str, events: ArchiveEvents) -> None:
        self._stream, self._path, self._events = stream, path, events
        self._done = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            n = int(readinto(buffer) or 0)
        else:
            data = self._stream.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self._done += n
        self._events.stream_read(self._path, self._done)
        return n
