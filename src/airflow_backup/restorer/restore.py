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
from dataclasses import dataclass, field

from airflow_backup.archiver.patterns import PatternSet
from airflow_backup.errors import IntegrityError, RestoreError, UnsafePath
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.repository.tree import Node, posix_mode
from airflow_backup.restorer.walk import check_name, find_node

__all__ = ["RestoreOptions", "RestoreStats", "Restorer"]


@dataclass(slots=True)
class RestoreOptions:
    """Where to restore and which paths (snapshot paths, restic's pattern rules)."""

    target: str
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    subpath: str = "/"


@dataclass(slots=True)
class RestoreStats:
    """What a restore wrote; ``errors`` lists (path, reason) for items not restored."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


class Restorer:
    """Writes snapshot trees to the local file system."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.stats = RestoreStats()
        self._is_root = os.geteuid() == 0
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self._includes = PatternSet([])
        self._excludes = PatternSet([])

    def restore(self, snapshot: Snapshot, options: RestoreOptions) -> RestoreStats:
        """Restore ``snapshot`` into ``options.target``. Raise RestoreError (after restoring
        everything else) if some items could not be written, IntegrityError at once if data
        is damaged."""
        self.repo.load_index()
        self._includes = PatternSet(options.includes)
        self._excludes = PatternSet(options.excludes)
        target = os.fsencode(os.path.abspath(options.target))
        os.makedirs(target, exist_ok=True)
        node, tree = find_node(self.repo, snapshot.tree, options.subpath)
        if node is None:
            self._restore_tree(tree, target, b"")
        else:
            self._restore_node(node, target, b"/" + node.name)
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

    def _restore_tree(self, tree_id: bytes, dest_dir: bytes, snap_dir: bytes) -> None:
        for node in self.repo.load_tree(tree_id):
            check_name(node.name)
            self._restore_node(node, dest_dir, snap_dir + b"/" + node.name)

    def _restore_node(self, node: Node, dest_dir: bytes, snap_path: bytes) -> None:
        check_name(node.name)
        wanted, descend = self._selected(snap_path, node.type == "dir")
        if not wanted and not descend:
            return
        dest = dest_dir + b"/" + node.name
        try:
            if node.type == "dir":
                self._make_dir(dest)
                if node.subtree is not None:
                    self._restore_tree(node.subtree, dest, snap_path)
                self.stats.dirs += 1
            elif node.type == "file":
                self._restore_file(node, dest)
            elif node.type == "symlink":
                self._clear(dest)
                os.symlink(node.linktarget, dest)
                self.stats.others += 1
            elif node.type == "fifo":
                self._clear(dest)
                os.mkfifo(dest, 0o600)
                self.stats.others += 1
            elif node.type in ("dev", "chardev"):
                if not self._is_root:
                    return
                self._clear(dest)
                kind = st.S_IFBLK if node.type == "dev" else st.S_IFCHR
                os.mknod(dest, kind | 0o600, node.device)
                self.stats.others += 1
            else:
                return  # sockets and irregular files cannot be recreated, as in restic
            self._set_metadata(node, dest)
        except OSError as exc:
            self.stats.errors.append((os.fsdecode(snap_path), exc.strerror or str(exc)))

    def _make_dir(self, dest: bytes) -> None:
        try:
            os.mkdir(dest, 0o700)
        except FileExistsError:
            if not st.S_ISDIR(os.lstat(dest).st_mode):
                raise UnsafePath(f"{os.fsdecode(dest)} exists and is not a directory") from None

    def _clear(self, dest: bytes) -> None:
        """Remove a non-directory left at ``dest`` so that it can be recreated."""
        try:
            if not st.S_ISDIR(os.lstat(dest).st_mode):
                os.unlink(dest)
        except FileNotFoundError:
            pass

    def _restore_file(self, node: Node, dest: bytes) -> None:
        self._clear(dest)
        if node.links > 1 and node.inode:
            key = (node.inode, node.device_id)
            first = self._hardlinks.get(key)
            if first is not None:
                os.link(first, dest, follow_symlinks=False)
                self.stats.files += 1
                return
            self._hardlinks[key] = dest
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            written = 0
            for blob_id in node.content or []:
                data = self.repo.load_blob(BlobType.DATA, blob_id)
                if data.count(0) == len(data):
                    os.lseek(fd, len(data), os.SEEK_CUR)  # leave a hole: sparse file
                else:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                written += len(data)
            os.ftruncate(fd, written)
        except (IntegrityError, OSError):
            os.close(fd)
            os.unlink(dest)
            raise
        os.close(fd)
        self.stats.files += 1
        self.stats.bytes += written

    def _set_xattrs(self, node: Node, dest: bytes) -> None:
        for attr in node.extended_attributes or []:
            try:
                value = base64.b64decode(attr.get("value") or "")
                os.setxattr(dest, attr["name"], value, follow_symlinks=False)
            except (OSError, KeyError, ValueError) as exc:
                # Like restic: a file system without xattr support is not a failed restore.
                if isinstance(exc, OSError) and exc.errno in (errno.ENOTSUP, errno.EPERM):
                    continue
                raise OSError(f"extended attribute {attr.get('name')!r}: {exc}") from exc

    def _set_metadata(self, node: Node, dest: bytes) -> None:
        is_link = node.type == "symlink"
        self._set_xattrs(node, dest)
        if self._is_root:
            os.chown(dest, node.uid, node.gid, follow_symlinks=False)
        if not is_link:
            os.chmod(dest, posix_mode(node.mode))
        try:
            atime = parse_ns(node.atime)[0]
            mtime = parse_ns(node.mtime)[0]
        except ValueError:
            return
        try:
            os.utime(dest, ns=(atime, mtime), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP):
                raise
