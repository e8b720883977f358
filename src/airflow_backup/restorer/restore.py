"""Restore a snapshot (or part of it) into a target directory, restic's layout.

Safety rules: node names are single path components (no ``/``, ``.``, ``..`` or NUL; an
entry with such a name, or a second entry of a name already seen in its directory, is
skipped and reported); directories are created by us and checked with ``lstat`` before use,
files are opened with ``O_NOFOLLOW``, so a symlink restored earlier is never followed. Every
blob's MAC and SHA-256 are verified before a byte is written.

Salvage: whatever is damaged (a missing or corrupt pack, a blob missing from the index, a
tree that cannot be loaded, an unsafe name), everything else is restored. Each item that is
not is recorded as (path, reason) in :attr:`RestoreStats.errors`; a file whose content could
not be fully written is removed; every directory restored gets its metadata. The tree walk
is iterative, so any depth of directories restores.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import errno
import hashlib
import os
import shutil
import stat as st
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_backup.archiver.patterns import PatternSet
from airflow_backup.errors import ConfigError, IntegrityError, NotFound, RestoreError, UnsafePath
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.repository.tree import Node, posix_mode
from airflow_backup.restorer.filler import FileJob, PackFiller
from airflow_backup.restorer.walk import find_node, show_name, unsafe_reason

__all__ = ["NO_SIZE", "OVERWRITE_MODES", "RestoreOptions", "RestoreStats", "Restorer"]

#: The size ``on_item`` is given for a directory, link or other node without content, and
#: for a deleted path (restic prints no size for those).
NO_SIZE = -1

#: restic's ``--overwrite`` values; "always" is restic's default.
OVERWRITE_MODES = ("always", "if-changed", "if-newer", "never")

_PENDING, _FRESH, _EXISTING, _FAILED = range(4)
_TREE, _NODE, _DIR_DONE = range(3)  # kinds of work on the walk's stack
_O_NOATIME = getattr(os, "O_NOATIME", 0)


class _Kind(enum.IntEnum):
    """Why an item was not restored, most serious last (decides the strict-mode error)."""

    WRITE = 0  # the target could not be written (RestoreError)
    UNSAFE = 1  # the tree names an unsafe path (UnsafePath)
    DAMAGED = 2  # the repository's data is missing or damaged (IntegrityError)


@dataclass(slots=True)
class RestoreOptions:
    """Where to restore and which paths (snapshot paths, restic's pattern rules).

    ``salvage``: return the stats, listing what could not be restored in ``errors``, instead
    of raising at the end (either way everything that can be restored is). ``verify``: read
    every restored file back and compare it with the snapshot's blobs.
    """

    target: str
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    subpath: str = "/"
    salvage: bool = False
    verify: bool = False
    dry_run: bool = False
    overwrite: str = "always"
    delete: bool = False
    sparse: bool = False
    on_item: Callable[[str, str, int], None] | None = None

    def __post_init__(self) -> None:
        if self.overwrite not in OVERWRITE_MODES:
            raise ConfigError(f"invalid overwrite behavior {self.overwrite!r}, must be one of "
                              f"({'|'.join(OVERWRITE_MODES)})")
        if self.dry_run and self.verify:
            raise ConfigError("--dry-run and --verify are mutually exclusive")


@dataclass(slots=True)
class _Dir:
    """A target directory the walk is in. One that is only descended into (an include
    pattern may match below it) is made when its first selected descendant is restored:
    ``state`` is _PENDING until then, _FRESH if this restore created it (nothing can be in
    the way of its entries), _EXISTING if a real directory was there, _FAILED if it could
    not be made (its error is recorded once; nothing below it is restored)."""

    dest: bytes
    snap_path: bytes
    parent: _Dir | None = None
    state: int = _PENDING
    names: set[bytes] | None = None  # every name in its tree, once loaded (for --delete)


@dataclass(slots=True)
class RestoreStats:
    """What a restore wrote; ``errors`` lists (path, reason) for items not restored (paths
    and names shown with :func:`~airflow_backup.restorer.walk.show_name`); ``verified``
    counts the files read back and found equal to the snapshot (``verify``)."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes: int = 0
    verified: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    # restic's restore counters (its JSON status and summary): items to restore (files,
    # directories, other nodes) and their bytes, items finished, skipped by the overwrite
    # rule (or already up to date), and paths deleted by --delete.
    total: int = 0
    total_bytes: int = 0
    restored: int = 0
    skipped: int = 0
    bytes_skipped: int = 0
    deleted: int = 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Restorer:
    """Writes snapshot trees to the local file system.

    The tree walk creates directories, symlinks and special files and plans every regular
    file; a :class:`PackFiller` then fills the files from packs in parallel. Metadata is set
    last: files once their content is complete, directories deepest first.
    """

    def __init__(self, repo: Repository, workers: int | None = None) -> None:
        self.repo = repo
        self.stats = RestoreStats()
        self._is_root = os.geteuid() == 0
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self._links: list[tuple[bytes, bytes, bytes]] = []
        self._failed: set[bytes] = set()  # files not written: nothing may be linked to them
        self._dirs: list[tuple[Node, bytes, bytes]] = []
        self._jobs: dict[int, tuple[Node, bytes, str]] = {}
        self._kinds: list[_Kind] = []
        self._includes = PatternSet([])
        self._excludes = PatternSet([])
        self._verify = False
        self._workers = workers
        self._filler = PackFiller(repo, workers)
        self._lock = threading.Lock()
        self._options = RestoreOptions(target="")

    def restore(self, snapshot: Snapshot, options: RestoreOptions) -> RestoreStats:
        """Restore ``snapshot`` into ``options.target``; return what was written.

        Everything that can be restored is, whatever else is damaged. With
        ``options.salvage`` the items that could not be are listed in ``stats.errors``;
        otherwise, once the rest is restored, raise IntegrityError if some data is missing
        or damaged, else UnsafePath if a tree names an unsafe path, else RestoreError (a
        write failed; nothing in the target's way -- a file or symlink where the snapshot
        has a directory -- is followed or replaced). A file whose content could not be fully
        written is removed. Storage errors other than a missing pack are raised at once,
        after the incomplete files are removed and the directories' metadata set.

        ``options.subpath`` (restic's ``SNAPSHOT:SUBFOLDER``) must name a directory: its
        contents are restored into the target, and include and exclude patterns match paths
        below it (``/foo`` for ``SUBFOLDER/foo``); without it they match the full snapshot
        path, as ``ls`` prints it. A directory only descended into (an include may match
        below it) is created only if something below it is restored.

        ``overwrite`` decides for what exists in the target (restic's ``--overwrite``),
        ``delete`` removes what the snapshot does not hold (only what the patterns select,
        never below a directory whose tree could not be read), ``dry_run`` changes nothing
        and only counts and reports (``on_item(action, path, size)`` with restic's actions:
        restored, updated, unchanged, deleted)."""
        self.repo.load_index()
        options = dataclasses.replace(options)  # (a dry run or --delete may change it)
        self._options = options
        self._includes = PatternSet(options.includes)
        self._excludes = PatternSet(options.excludes)
        self._verify = options.verify
        self._filler = PackFiller(self.repo, self._workers, sparse=options.sparse)
        node, root_tree = find_node(self.repo, snapshot.tree, options.subpath)
        tree: bytes | None = root_tree
        unsafe = ""
        if node is not None:
            # find_node matched these components exactly: this is the node's snapshot path.
            parts = options.subpath.encode("utf-8", "surrogateescape").split(b"/")
            path = b"/" + b"/".join(p for p in parts if p)
            problem = unsafe_reason(node.name)  # ("ID:/.." finds a node named "..")
            if problem is not None:
                unsafe, tree = problem, None
            elif node.type != "dir" or node.subtree is None:
                raise ConfigError(f"{show_name(path)}: not a directory in the snapshot "
                                  f"(SNAPSHOT:SUBFOLDER restores a directory's contents)")
            else:
                tree = node.subtree
        target = os.fsencode(os.path.abspath(options.target))
        if not options.dry_run:
            os.makedirs(target, exist_ok=True)
        elif not os.path.isdir(target):
            options.overwrite = "never"  # nothing exists there to compare (restic's note)
        root = _Dir(target, b"/", state=_EXISTING)
        try:
            if tree is None:
                self._error(path, f"refusing unsafe entry: {unsafe}", _Kind.UNSAFE)
            else:
                self._walk([(_TREE, tree, root, b"")])
            if options.delete:
                self._delete_unexpected(root)
            if not options.dry_run:
                self._filler.run(self._file_done)
                self._make_links()
        finally:
            # Deepest first: a directory's own entries are done before it gets its mode and
            # times -- also when the restore stops early.
            for dnode, dest, snap_path in [] if options.dry_run else self._dirs:
                try:
                    self._set_metadata(dnode, dest)
                except OSError as exc:
                    self._error(snap_path, _reason(exc))
            # Files fail in the order packs are read: list every item in path order.
            pairs = sorted(zip(self.stats.errors, self._kinds, strict=True),
                           key=lambda p: p[0][0])
            self.stats.errors[:] = [e for e, _ in pairs]
            self._kinds[:] = [k for _, k in pairs]
        if self.stats.errors and not options.salvage:
            self._raise()
        return self.stats

    # ---- errors --------------------------------------------------------------------------

    def _error(self, snap_path: bytes, reason: str, kind: _Kind = _Kind.WRITE) -> None:
        """Record that the item at ``snap_path`` was not restored (thread-safe)."""
        with self._lock:
            self.stats.errors.append((show_name(snap_path or b"/"), reason))
            self._kinds.append(kind)

    def _raise(self) -> None:
        worst = max(self._kinds)
        path, reason = self.stats.errors[self._kinds.index(worst)]
        message = (f"{len(self.stats.errors)} item(s) could not be restored; "
                   f"first: {path}: {reason}")
        if worst is _Kind.DAMAGED:
            raise IntegrityError(message)
        if worst is _Kind.UNSAFE:
            raise UnsafePath(message)
        raise RestoreError(message)

    # ---- the tree walk -------------------------------------------------------------------

    def _selected(self, snap_path: bytes, is_dir: bool) -> tuple[bool, bool]:
        """Return (restore this node, descend into it)."""
        if self._excludes and self._excludes.matches(snap_path):
            return False, False
        if not self._includes:
            return True, True
        if self._includes.matches(snap_path):
            return True, True
        return False, is_dir and self._includes.may_match_below(snap_path)

    def _walk(self, stack: list[tuple[int, object, _Dir, bytes]]) -> None:
        """Do the work on ``stack`` (last first) and all it leads to, depth first: load a
        tree and queue its nodes, restore a node (a directory queues its tree and, after it,
        its own completion). No recursion: a tree of any depth is walked."""
        while stack:
            kind, item, parent, snap_path = stack.pop()
            if kind == _TREE:
                assert isinstance(item, bytes)
                nodes = self._load_tree(item, snap_path, parent)
                stack.extend(reversed([(_NODE, n, parent, snap_path + b"/" + n.name)
                                       for n in nodes]))
                continue
            assert isinstance(item, Node)
            if kind == _DIR_DONE:
                if parent.state in (_FRESH, _EXISTING):
                    if self._options.delete:
                        self._delete_unexpected(parent)
                    self.stats.dirs += 1
                    self._dirs.append((item, parent.dest, snap_path))
                    self._report("restored", snap_path, NO_SIZE)
                continue
            if parent.state == _FAILED:  # its error is recorded; nothing below it can be
                continue
            d = self._restore_node(item, parent, snap_path)
            if d is not None:
                stack.append((_DIR_DONE, item, d, snap_path))
                if item.subtree is not None and d.state != _FAILED:
                    stack.append((_TREE, item.subtree, d, snap_path))

    def _load_tree(self, tree_id: bytes, snap_dir: bytes, d: _Dir) -> list[Node]:
        """Return the nodes of a tree that may be restored, in order: unsafe names and
        second entries of a name are left out and reported (when selected), and so is a tree
        that cannot be loaded. ``d.names`` gets every name of the tree (what --delete keeps);
        an unsafe name turns --delete off, as in restic."""
        try:
            nodes = self.repo.load_tree(tree_id)
        except (IntegrityError, NotFound) as exc:
            self._error(snap_dir, f"the directory's contents are lost: {exc}", _Kind.DAMAGED)
            return []
        d.names = {n.name for n in nodes}
        if any(unsafe_reason(n.name) is not None for n in nodes):
            self._options.delete = False
        out: list[Node] = []
        seen: set[bytes] = set()
        for node in nodes:
            snap_path = snap_dir + b"/" + node.name
            problem = unsafe_reason(node.name)
            if problem is None and node.name in seen:
                problem = "a second entry of this name in its directory (the first is restored)"
            if problem is None:
                seen.add(node.name)
                out.append(node)
                continue
            wanted, descend = self._selected(snap_path, node.type == "dir")
            if wanted or descend:  # (the reason names the part of the name at fault)
                self._error(snap_path, f"refusing unsafe entry: {problem}", _Kind.UNSAFE)
        return out

    def _ensure(self, d: _Dir) -> bool:
        """Make ``d`` and its pending parents; return whether it exists. A directory that
        cannot be made has its error recorded once, and everything below it is skipped."""
        chain: list[_Dir] = []
        p: _Dir | None = d
        while p is not None and p.state == _PENDING:
            chain.append(p)
            p = p.parent
        failed = p is not None and p.state == _FAILED
        for c in reversed(chain):  # outermost first
            if failed:
                c.state = _FAILED
                continue
            try:
                c.state = _FRESH if self._make_dir(c.dest) else _EXISTING
            except (OSError, UnsafePath) as exc:
                c.state = _FAILED
                failed = True
                self._error(c.snap_path, _reason(exc))
        return d.state != _FAILED

    def _restore_node(self, node: Node, parent: _Dir, snap_path: bytes) -> _Dir | None:
        """Restore ``node`` (at ``snap_path`` in the snapshot, a safe name) into ``parent``,
        if selected; what cannot be written is recorded in ``stats.errors``. Return the
        directory to walk next for a directory node that is restored or descended into."""
        wanted, descend = self._selected(snap_path, node.type == "dir")
        if not wanted and not descend:
            return None
        dest = parent.dest + b"/" + node.name
        if node.type == "dir":
            d = _Dir(dest, snap_path, parent)
            if wanted:
                with self._lock:
                    self.stats.total += 1
                self._ensure(d)
            return d
        # Sockets and irregular files cannot be recreated, as in restic; devices need root.
        if node.type not in ("file", "symlink", "fifo", "dev", "chardev") or (
                node.type in ("dev", "chardev") and not self._is_root):
            return None
        if not self._ensure(parent):
            return None
        try:
            if node.type == "file":
                self._plan_file(node, dest, snap_path, parent.state == _FRESH)
                return None
            with self._lock:
                self.stats.total += 1
            if self._decide(node, dest, parent.state == _FRESH) == "skip":
                self._count_skipped(snap_path, node.size or 0)
                return None
            if not self._options.dry_run:
                self._clear(dest)
                if node.type == "symlink":
                    os.symlink(node.linktarget, dest)
                elif node.type == "fifo":
                    os.mkfifo(dest, 0o600)
                else:
                    kind = st.S_IFBLK if node.type == "dev" else st.S_IFCHR
                    os.mknod(dest, kind | 0o600, node.device)
                self._set_metadata(node, dest)
            self.stats.others += 1
            self._report("restored", snap_path, NO_SIZE)
        except OSError as exc:
            self._error(snap_path, _reason(exc))
        return None

    # ---- overwrite, delete and reporting -------------------------------------------------

    def _report(self, action: str, path: bytes, size: int, *, count: bool = True) -> None:
        """Count an item as finished (``count``) and tell ``on_item`` (thread-safe)."""
        with self._lock:
            if count and action in ("restored", "updated"):
                self.stats.restored += 1
            on_item = self._options.on_item
            if on_item is not None:
                on_item(action, show_name(path or b"/"), size)

    def _count_skipped(self, snap_path: bytes, size: int) -> None:
        with self._lock:
            self.stats.skipped += 1
            self.stats.bytes_skipped += size
        self._report("unchanged", snap_path, size)

    def _decide(self, node: Node, dest: bytes, fresh: bool) -> str:
        """Return what restic's overwrite rule does with ``node`` at ``dest``: "restored"
        (nothing there, or not a regular file we can compare), "updated" (a file whose
        content differs), "unchanged" (same content: only its metadata is set) or "skip"
        (kept as it is: ``never``, or ``if-newer`` and the snapshot's is not newer)."""
        if fresh:
            return "restored"
        try:
            s = os.lstat(dest)
        except FileNotFoundError:
            return "restored"
        mode = self._options.overwrite
        if mode == "never":
            return "skip"
        if mode == "if-newer":
            try:
                newer = parse_ns(node.mtime)[0] > s.st_mtime_ns
            except ValueError:
                newer = False
            if not newer:
                return "skip"
        if node.type != "file" or not st.S_ISREG(s.st_mode):
            return "restored"
        if s.st_size != (node.size or 0):
            return "updated"
        if mode == "if-changed":
            with contextlib.suppress(ValueError):
                if parse_ns(node.mtime)[0] == s.st_mtime_ns:
                    return "unchanged"
        return "unchanged" if self._same_content(dest, node) else "updated"

    def _same_content(self, dest: bytes, node: Node) -> bool:
        """Return whether the regular file at ``dest`` holds exactly ``node``'s content."""
        try:
            fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            offset = 0
            for blob_id in node.content or []:
                entry = self.repo.index.lookup(BlobType.DATA, blob_id)
                if entry is None:
                    return False
                length = entry.blob.plain_length
                data = os.pread(fd, length, offset)
                while 0 < len(data) < length:
                    more = os.pread(fd, length - len(data), offset + len(data))
                    if not more:
                        break
                    data += more
                if len(data) != length or hashlib.sha256(data).digest() != blob_id:
                    return False
                offset += length
            return os.fstat(fd).st_size == offset
        except OSError:
            return False
        finally:
            os.close(fd)

    def _delete_unexpected(self, d: _Dir) -> None:
        """--delete: remove the entries of directory ``d`` that its snapshot tree does not
        hold and the patterns select (everything below them too), reporting each path
        removed, deepest first. Nothing is removed where the tree could not be read."""
        if d.names is None or not self._options.delete:
            return
        try:
            entries = sorted(os.listdir(d.dest))
        except FileNotFoundError:
            return
        except OSError as exc:
            self._error(d.snap_path, f"cannot list the directory for --delete: {_reason(exc)}")
            return
        for name in entries:
            if name in d.names or not self._selected(d.snap_path + b"/" + name, False)[0]:
                continue
            path = d.dest + b"/" + name
            victims = [path]
            try:
                if st.S_ISDIR(os.lstat(path).st_mode):
                    for top, dirs, files in os.walk(path):
                        victims += [top + b"/" + n for n in sorted(dirs) + sorted(files)]
                if not self._options.dry_run:
                    if len(victims) > 1 or st.S_ISDIR(os.lstat(path).st_mode):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
            except OSError as exc:
                self._error(d.snap_path + b"/" + name, f"could not delete: {_reason(exc)}")
                continue
            for victim in reversed(victims):
                with self._lock:
                    self.stats.deleted += 1
                self._report("deleted", victim, NO_SIZE, count=False)

    def _make_dir(self, dest: bytes) -> bool:
        """Create a directory; return False if a real directory was already there. A dry
        run creates nothing and returns whether nothing is there."""
        if self._options.dry_run:
            try:
                mode = os.lstat(dest).st_mode
            except FileNotFoundError:
                return True
            if not st.S_ISDIR(mode):
                raise UnsafePath(f"{show_name(dest)} exists and is not a directory")
            return False
        try:
            os.mkdir(dest, 0o700)
        except FileExistsError:
            if not st.S_ISDIR(os.lstat(dest).st_mode):
                raise UnsafePath(f"{show_name(dest)} exists and is not a directory") from None
            return False
        return True

    def _clear(self, dest: bytes) -> None:
        """Remove a non-directory left at ``dest`` so that it can be recreated; with
        --delete also a directory (restic: a non-empty directory where the snapshot has a
        file)."""
        try:
            if not st.S_ISDIR(os.lstat(dest).st_mode):
                os.unlink(dest)
            elif self._options.delete:
                shutil.rmtree(dest)
        except FileNotFoundError:
            pass

    # ---- files ---------------------------------------------------------------------------

    def _plan_file(self, node: Node, dest: bytes, snap_path: bytes, fresh: bool) -> None:
        key = (node.inode, node.device_id)
        if node.links > 1 and node.inode and key in self._hardlinks:
            if self._decide(node, dest, fresh) == "skip":
                self._count_skipped(snap_path, 0)
                return
            with self._lock:
                self.stats.total += 1
            if self._options.dry_run:
                self.stats.files += 1
                self._report("restored", snap_path, NO_SIZE)
            else:
                self._links.append((self._hardlinks[key], dest, snap_path))
            return
        action = self._decide(node, dest, fresh)
        size = node.size or 0
        if action in ("skip", "unchanged"):
            self._count_skipped(snap_path, size)
            if node.links > 1 and node.inode:
                self._hardlinks[key] = dest
            if action == "unchanged" and not self._options.dry_run:
                self._set_metadata(node, dest)
            return
        with self._lock:
            self.stats.total += 1
            self.stats.total_bytes += size
        if node.links > 1 and node.inode:
            self._hardlinks[key] = dest
        if self._options.dry_run:
            with self._lock:
                self.stats.files += 1
                self.stats.bytes += size
            self._report(action, snap_path, size)
            return
        if not fresh:
            self._clear(dest)
        job = FileJob(dest)
        try:
            self._filler.add_file(job, node.content or [])
        except IntegrityError as exc:
            self._failed.add(dest)
            self._error(snap_path, f"its data is lost: {exc}", _Kind.DAMAGED)
            return
        self._jobs[id(job)] = (node, snap_path, action)
        if job.remaining == 0:  # an empty file: nothing will write it, create it now
            try:
                fd = PackFiller.create(job)
            except OSError:
                self._failed.add(dest)
                raise
            try:
                self._file_done(job, fd)
            finally:
                os.close(fd)

    def _file_done(self, job: FileJob, fd: int | None = None) -> None:
        node, snap_path, action = self._jobs[id(job)]
        if job.failed:  # the filler has removed what it wrote
            with self._lock:
                self._failed.add(job.dest)
            self._error(snap_path, job.reason or "could not write the file's content",
                        _Kind.DAMAGED if job.lost else _Kind.WRITE)
            return
        if self._verify:
            problem = self._check_content(job, node)
            if problem is not None:
                with contextlib.suppress(OSError):
                    os.unlink(job.dest)
                with self._lock:
                    self._failed.add(job.dest)
                self._error(snap_path, f"verification failed: {problem}; the file was removed")
                return
        try:
            self._set_metadata(node, job.dest if fd is None else fd)
        except OSError as exc:
            self._error(snap_path, _reason(exc))
            return
        with self._lock:
            self.stats.files += 1
            self.stats.bytes += job.size
            if self._verify:
                self.stats.verified += 1
        self._report(action, snap_path, job.size)

    def _check_content(self, job: FileJob, node: Node) -> str | None:
        """Read the restored file back (before its metadata is set: its mode still lets us
        and its access time is not yet restored) and compare each of its pieces with the
        SHA-256 of the snapshot's blob (the blob's id); return the first difference."""
        try:
            fd = os.open(job.dest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | _O_NOATIME)
        except PermissionError:  # O_NOATIME is for the file's owner only
            fd = os.open(job.dest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            offset = 0
            for blob_id in node.content or []:
                entry = self.repo.index.lookup(BlobType.DATA, blob_id)
                if entry is None:  # planned, so indexed; the index cannot lose it
                    return f"data blob {blob_id.hex()} is not in the index"
                length = entry.blob.plain_length
                data = os.pread(fd, length, offset)
                while len(data) < length:
                    more = os.pread(fd, length - len(data), offset + len(data))
                    if not more:
                        return f"the file is {offset + len(data)} bytes, shorter than {job.size}"
                    data += more
                if hashlib.sha256(data).digest() != blob_id:
                    return f"bytes {offset}-{offset + length - 1} differ from the snapshot"
                offset += length
            size = os.fstat(fd).st_size
            if size != offset:
                return f"the file is {size} bytes, not {offset}"
            return None
        except OSError as exc:
            return f"could not read the file back: {_reason(exc)}"
        finally:
            os.close(fd)

    def _make_links(self) -> None:
        for first, dest, snap_path in self._links:
            if first in self._failed:
                self._error(snap_path, "its hard-linked file could not be written")
                continue
            try:
                self._clear(dest)
                os.link(first, dest, follow_symlinks=False)
                self.stats.files += 1
                self._report("restored", snap_path, NO_SIZE)
            except OSError as exc:
                self._error(snap_path, _reason(exc))

    # ---- metadata ------------------------------------------------------------------------

    def _set_xattrs(self, node: Node, dest: bytes | int) -> None:
        for attr in node.extended_attributes or []:
            try:
                name, encoded = attr["name"], attr.get("value") or ""
                if not isinstance(name, str) or not isinstance(encoded, str):
                    raise ValueError("name or value is not a string")
                value = base64.b64decode(encoded)
                if isinstance(dest, int):
                    os.setxattr(dest, name, value)
                else:
                    os.setxattr(dest, name, value, follow_symlinks=False)
            except (OSError, KeyError, ValueError) as exc:
                # Like restic: a file system without xattr support is not a failed restore.
                if isinstance(exc, OSError) and exc.errno in (errno.ENOTSUP, errno.EPERM):
                    continue
                raise OSError(f"extended attribute {attr.get('name')!r}: {exc}") from exc

    def _set_metadata(self, node: Node, dest: bytes | int) -> None:
        """Set xattrs, owner (as root), mode and times, through a path (never following a
        symlink) or through an open descriptor of a regular file."""
        by_fd = isinstance(dest, int)
        self._set_xattrs(node, dest)
        if self._is_root:
            if by_fd:
                os.chown(dest, node.uid, node.gid)
            else:
                os.chown(dest, node.uid, node.gid, follow_symlinks=False)
        if node.type != "symlink":
            os.chmod(dest, posix_mode(node.mode))
        try:
            mtime = parse_ns(node.mtime)[0]
            atime = mtime if node.atime == node.mtime else parse_ns(node.atime)[0]
        except ValueError:
            return
        try:
            if by_fd:
                os.utime(dest, ns=(atime, mtime))
            else:
                os.utime(dest, ns=(atime, mtime), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP):
                raise
