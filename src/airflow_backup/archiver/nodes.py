"""Turn ``lstat`` results into restic tree nodes."""

from __future__ import annotations

import base64
import grp
import os
import pwd
import stat as st
from collections.abc import Mapping
from functools import lru_cache
from typing import Protocol

from airflow_backup.jsontypes import JSONObject, JSONValue
from airflow_backup.repository.timefmt import format_ns
from airflow_backup.repository.tree import Node, go_mode

__all__ = ["group_name", "node_from_stat", "node_type", "same_file_node", "user_name"]


class StatLike(Protocol):
    """The ``lstat`` fields a node is built from: an ``os.stat_result``, or the warm-up's
    slimmer copy of them (``archiver.warm.SlimStat``)."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_rdev(self) -> int: ...
    @property
    def st_atime_ns(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    """Return the name of user ``uid`` ("" if it has none), as restic records it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    """Return the name of group ``gid`` ("" if it has none)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def node_type(st_mode: int) -> str:
    """Return restic's node type for a POSIX file mode."""
    fmt = st.S_IFMT(st_mode)
    return {
        st.S_IFREG: "file",
        st.S_IFDIR: "dir",
        st.S_IFLNK: "symlink",
        st.S_IFIFO: "fifo",
        st.S_IFSOCK: "socket",
        st.S_IFCHR: "chardev",
        st.S_IFBLK: "dev",
    }.get(fmt, "irregular")


def read_xattrs(path: bytes) -> list[JSONObject] | None:
    """Return a node's extended attributes in restic's shape (value base64), or None.

    Attributes that vanish or cannot be read are skipped, as restic does.
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return None
    out: list[JSONObject] = []
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out.append({"name": name, "value": base64.b64encode(value).decode()})
    return out or None


def node_from_stat(name: bytes, path: bytes, s: StatLike, with_atime: bool = False) -> Node:
    """Given a name, its full path and its ``lstat`` result, return the node restic would store.

    Symlink targets are read here; file content and dir subtrees are filled in by the caller.
    Unless ``with_atime``, the access time is recorded as the mtime (restic's default), so that
    merely reading a file does not change its node.
    Raise OSError if a symlink cannot be read.
    """
    ntype = node_type(s.st_mode)
    mtime = format_ns(s.st_mtime_ns)
    node = Node(
        name=name,
        type=ntype,
        mode=go_mode(s.st_mode),
        mtime=mtime,
        atime=format_ns(s.st_atime_ns) if with_atime else mtime,
        ctime=format_ns(s.st_ctime_ns),
        uid=s.st_uid,
        gid=s.st_gid,
        user=user_name(s.st_uid),
        group=group_name(s.st_gid),
        inode=s.st_ino,
    )
    if ntype != "dir":
        node.links = s.st_nlink
        if s.st_nlink > 1:
            # restic stores the device only for hard links, to pair them on restore.
            node.device_id = s.st_dev
    node.extended_attributes = read_xattrs(path)
    if ntype == "file":
        node.size = s.st_size
        node.content = []
    elif ntype == "symlink":
        node.linktarget = os.readlink(path)
    elif ntype in ("dev", "chardev"):
        node.device = s.st_rdev
    return node


def same_file_node(old: Mapping[str, JSONValue] | None, s: StatLike) -> bool:
    """Return whether ``old``, a file node of the parent snapshot as parsed JSON, is exactly
    the node that :func:`node_from_stat` would build for a regular file with ``lstat``
    result ``s`` (access time recorded as mtime).

    Same inode, size, mtime and ctime is restic's test for unchanged content; ctime also
    moves on every change of mode, owner, link count and extended attribute, so with the
    owner's names and the hard-link device compared too, the old node can be kept whole:
    no new node, no xattr read, no time formatting beyond these two.
    """
    if old is None:
        return False
    get = old.get
    nlink = s.st_nlink
    return (
        get("type") == "file"
        and isinstance(get("content"), list)
        and (get("inode") or 0) == s.st_ino
        and (get("size") or 0) == s.st_size
        and (get("uid") or 0) == s.st_uid
        and (get("gid") or 0) == s.st_gid
        and (get("links") or 0) == nlink
        and (get("device_id") or 0) == (s.st_dev if nlink > 1 else 0)
        and st.S_ISREG(s.st_mode)
        and get("mtime") == get("atime") == format_ns(s.st_mtime_ns)
        and get("ctime") == format_ns(s.st_ctime_ns)
        and (get("user") or "") == user_name(s.st_uid)
        and (get("group") or "") == group_name(s.st_gid)
    )
