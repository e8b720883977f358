"""Restore a snapshot (or part of it) into a target directory, restic's layout.

Safety rules: node names are single path components (no ``/``, ``.``, ``..`` or NUL);
directories are created by us and checked with ``lstat`` before use, files are opened with
``O_NOFOLLOW``, so a symlink restored earlier is never followed. Every blob's MAC and SHA-256
are verified before a byte is written; a damaged blob aborts the file and the restore.
"""

from __future__ import annotations

import base64
import errno
import os
import stat as st
import threading
from dataclasses import dataclass, field

from airflow_backup.archiver.patterns import PatternSet
from airflow_backup.errors import RestoreError, UnsafePath
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.repository.tree import Node, posix_mode
from airflow_backup.restorer.filler import FileJob, PackFiller
from airflow_backup.restorer.walk import check_name, find_node

__all__ = ["RestoreOptions", "RestoreStats", "Restorer"]

_PENDING, _FRESH, _EXISTING, _FAILED = range(4)


@dataclass(slots=True)
class RestoreOptions:
    """Where to restore and which paths (snapshot paths, restic's pattern rules)."""

    target: str
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    subpath: str = "/"


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


@dataclass(slots=True)
class RestoreStats:
    """What a restore wrote; ``errors`` lists (path, reason) for items not restored."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


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
        self._links: list[tuple[bytes, bytes, str]] = []
        self._failed: set[bytes] = set()  # files not written: nothing may be linked to them
        self._dirs: list[tuple[Node, bytes, bytes]] = []
        self._jobs: dict[int, tuple[Node, bytes]] = {}
        self._includes = PatternSet([])
        self._excludes = PatternSet([])
        self._filler = PackFiller(repo, workers)
        self._lock = threading.Lock()


    def restore(self, snapshot: Snapshot, options: RestoreOptions) -> RestoreStats:
        """Restore ``snapshot`` into ``options.target``. Raise RestoreError (after restoring
        everything else) if some items could not be written -- a file whose write failed is
        removed, and nothing in the target's way (a file or symlink where the snapshot has a
        directory) is followed or replaced; IntegrityError if data is damaged (files that
        could not be completed are removed); UnsafePath if a tree names an unsafe path.

        Include and exclude patterns match the full snapshot path (as ``ls`` prints it), also
        when restoring ``options.subpath``. A directory only descended into (an include may
        match below it) is created only if something below it is restored."""
        self.repo.load_index()
        self._includes = PatternSet(options.includes)
        self._excludes = PatternSet(options.excludes)
        target = os.fsencode(os.path.abspath(options.target))
        os.makedirs(target, exist_ok=True)
        node, tree = find_node(self.repo, snapshot.tree, options.subpath)
        root = _Dir(target, b"/", state=_EXISTING)
        if node is None:
            self._restore_tree(tree, root, b"")
        else:
            # find_node matched these components exactly: this is the node's snapshot path.
            parts = options.subpath.encode("utf-8", "surrogateescape").split(b"/")
            self._restore_node(node, root, b"/" + b"/".join(p for p in parts if p))
        self._filler.run(self._file_done)
        self.stats.bytes = self._filler.bytes_written
        for first, dest, shown in self._links:
            if first in self._failed:
                self.stats.errors.append((shown, "its hard-linked file could not be written"))
                continue
            try:
                self._clear(dest)
                os.link(first, dest, follow_symlinks=False)
                self.stats.files += 1
            except OSError as exc:
                self.stats.errors.append((shown, exc.strerror or str(exc)))
        for dnode, dest, snap_path in self._dirs:
            try:
                self._set_metadata(dnode, dest)
            except OSError as exc:
                self.stats.errors.append((os.fsdecode(snap_path), exc.strerror or str(exc)))
        if self.stats.errors:
            path, reason = self.stats.errors[0]
            raise RestoreError(
                f"{len(self.stats.errors)} item(s) could not be restored; first: {path}: {reason}"
            )
        return self.stats

    def _selected(self, snap_path: bytes, is_dir: bool) -> tuple[bool, bool]:
        """Return (restore this node, descend into it)."""
        if self._excludes and self._excludes.matches(snap_path):
            return False, False
        if not self._includes:
            return True, True
        if self._includes.matches(snap_path):
            return True, True
        return False, is_dir and self._includes.may_match_below(snap_path)

    def _restore_tree(self, tree_id: bytes, parent: _Dir, snap_dir: bytes) -> None:
        """Restore a tree's nodes into the directory ``parent``."""
        for node in self.repo.load_tree(tree_id):
            if parent.state == _FAILED:
                return
            self._restore_node(node, parent, snap_dir + b"/" + node.name)

    def _ensure(self, d: _Dir) -> bool:
        """Make ``d`` and its pending parents; return whether it exists. A directory that
        cannot be made has its error recorded once, and everything below it is skipped."""
        if d.state == _PENDING:
            if d.parent is not None and not self._ensure(d.parent):
                d.state = _FAILED
                return False
            try:
                d.state = _FRESH if self._make_dir(d.dest) else _EXISTING
            except (OSError, UnsafePath) as exc:
                d.state = _FAILED
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.stats.errors.append((os.fsdecode(d.snap_path), reason))
        return d.state != _FAILED

    def _restore_node(self, node: Node, parent: _Dir, snap_path: bytes) -> None:
        """Restore ``node`` (at ``snap_path`` in the snapshot) into ``parent``, if selected;
        what cannot be written is recorded in ``stats.errors``. Raise UnsafePath if a name
        in the tree could escape the target."""
        check_name(node.name)
        wanted, descend = self._selected(snap_path, node.type == "dir")
        if not wanted and not descend:
            return
        dest = parent.dest + b"/" + node.name
        if node.type == "dir":
            d = _Dir(dest, snap_path, parent)
            if wanted and not self._ensure(d):
                return
            if node.subtree is not None:
                self._restore_tree(node.subtree, d, snap_path)
            if d.state in (_FRESH, _EXISTING):
                self.stats.dirs += 1
                self._dirs.append((node, dest, snap_path))
            return
        # Sockets and irregular files cannot be recreated, as in restic; devices need root.
        if node.type not in ("file", "symlink", "fifo", "dev", "chardev") or (
                node.type in ("dev", "chardev") and not self._is_root):
            return
        if not self._ensure(parent):
            return
        try:
            if node.type == "file":
                self._plan_file(node, dest, snap_path, parent.state == _FRESH)
                return
            if node.type == "symlink":
                self._clear(dest)
                os.symlink(node.linktarget, dest)
            elif node.type == "fifo":
                self._clear(dest)
                os.mkfifo(dest, 0o600)
            else:
                self._clear(dest)
                kind = st.S_IFBLK if node.type == "dev" else st.S_IFCHR
                os.mknod(dest, kind | 0o600, node.device)
            self.stats.others += 1
            self._set_metadata(node, dest)
        except OSError as exc:
            self.stats.errors.append((os.fsdecode(snap_path), exc.strerror or str(exc)))

    def _make_dir(self, dest: bytes) -> bool:
        """Create a directory; return False if a real directory was already there."""
        try:
            os.mkdir(dest, 0o700)
        except FileExistsError:
            if not st.S_ISDIR(os.lstat(dest).st_mode):
                raise UnsafePath(f"{os.fsdecode(dest)} exists and is not a directory") from None
            return False
        return True

    def _clear(self, dest: bytes) -> None:
        """Remove a non-directory left at ``dest`` so that it can be recreated."""
        try:
            if not st.S_ISDIR(os.lstat(dest).st_mode):
                os.unlink(dest)
        except FileNotFoundError:
            pass

    def _plan_file(self, node: Node, dest: bytes, snap_path: bytes, fresh: bool) -> None:
        if not fresh:
            self._clear(dest)
        if node.links > 1 and node.inode:
            key = (node.inode, node.device_id)
            first = self._hardlinks.get(key)
            if first is not None:
                self._links.append((first, dest, os.fsdecode(snap_path)))
                return
            self._hardlinks[key] = dest
        job = FileJob(dest)
        self._jobs[id(job)] = (node, snap_path)
        self._filler.add_file(job, node.content or [])
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
        node, snap_path = self._jobs[id(job)]
        shown = os.fsdecode(snap_path)
        if job.failed:  # the filler has removed what it wrote
            with self._lock:
                self._failed.add(job.dest)
                self.stats.errors.append((shown, "could not write the file's content"))
            return
        try:
            self._set_metadata(node, job.dest if fd is None else fd)
        except OSError as exc:
            with self._lock:
                self.stats.errors.append((shown, exc.strerror or str(exc)))
            return
        with self._lock:
            self.stats.files += 1

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
