"""Tree blobs: ``{"nodes":[…]}\\n`` with restic's node fields, Go file modes and name order.

Node names are raw bytes (file names need not be UTF-8); in JSON they are Go-quoted. Times are
kept as the exact RFC 3339 strings so that a tree read from restic re-encodes byte for byte.
"""

from __future__ import annotations

import base64
import itertools
import stat as st
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_backup.errors import IntegrityError
from airflow_backup.repository import gojson
from airflow_backup.repository.gojson import go_unquote_name

__all__ = ["Node", "decode_tree", "encode_tree", "go_mode", "posix_mode"]

# Go's fs.FileMode bits.
MODE_DIR = 1 << 31
MODE_APPEND = 1 << 30
MODE_EXCLUSIVE = 1 << 29
MODE_TEMPORARY = 1 << 28
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
MODE_TYPE = (MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE
             | MODE_CHAR_DEVICE | MODE_IRREGULAR)


def go_mode(st_mode: int) -> int:
    """Convert a POSIX ``st_mode`` into Go's ``fs.FileMode`` (as restic stores it)."""
    mode = st_mode & 0o777
    if st_mode & st.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & st.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & st.S_ISVTX:
        mode |= MODE_STICKY
    fmt = st.S_IFMT(st_mode)
    if fmt == st.S_IFDIR:
        mode |= MODE_DIR
    elif fmt == st.S_IFLNK:
        mode |= MODE_SYMLINK
    elif fmt == st.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif fmt == st.S_IFSOCK:
        mode |= MODE_SOCKET
    elif fmt == st.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif fmt == st.S_IFBLK:
        mode |= MODE_DEVICE
    return mode


def posix_mode(mode: int) -> int:
    """Return the permission bits (with setuid/setgid/sticky) of a Go ``fs.FileMode``."""
    out = mode & 0o777
    if mode & MODE_SETUID:
        out |= st.S_ISUID
    if mode & MODE_SETGID:
        out |= st.S_ISGID
    if mode & MODE_STICKY:
        out |= st.S_ISVTX
    return out


@dataclass(slots=True)
class Node:
    """One entry of a tree. ``name`` and ``linktarget`` are raw bytes."""

    name: bytes
    type: str
    mode: int = 0
    mtime: str = "0001-01-01T00:00:00Z"
    atime: str = "0001-01-01T00:00:00Z"
    ctime: str = "0001-01-01T00:00:00Z"
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    inode: int = 0
    device_id: int = 0
    size: int = 0
    links: int = 0
    linktarget: bytes = b""
    extended_attributes: list[dict[str, str]] | None = None
    generic_attributes: dict[str, Any] | None = None
    device: int = 0
    content: list[bytes] | None = None
    subtree: bytes | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the node as restic's JSON object, fields in Go order, omitempty honoured."""
        out: dict[str, Any] = {"name": gojson.go_quote_name(self.name), "type": self.type}
        if self.mode:
            out["mode"] = self.mode
        out["mtime"] = self.mtime
        out["atime"] = self.atime
        out["ctime"] = self.ctime
        out["uid"] = self.uid
        out["gid"] = self.gid
        if self.user:
            out["user"] = self.user
        if self.group:
            out["group"] = self.group
        if self.inode:
            out["inode"] = self.inode
        if self.device_id:
            out["device_id"] = self.device_id
        if self.size:
            out["size"] = self.size
        if self.links:
            out["links"] = self.links
        if self.linktarget:
            try:
                out["linktarget"] = self.linktarget.decode("utf-8")
            except UnicodeDecodeError:
                # Each invalid byte becomes a lone surrogate, which gojson.dumps writes as
                # Go's "\ufffd" escape, one per byte; the exact bytes go in linktarget_raw.
                out["linktarget"] = self.linktarget.decode("utf-8", "surrogateescape")
                out["linktarget_raw"] = base64.b64encode(self.linktarget).decode()
        if self.extended_attributes:
            out["extended_attributes"] = self.extended_attributes
        if self.generic_attributes:
            out["generic_attributes"] = self.generic_attributes
        if self.device:
            out["device"] = self.device
        out["content"] = None if self.content is None else [c.hex() for c in self.content]
        if self.subtree is not None:
            out["subtree"] = self.subtree.hex()
        if self.error:
            out["error"] = self.error
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Node:
        """Parse one node as written by restic or by us."""
        get = obj.get
        raw_target = get("linktarget_raw")
        target = (base64.b64decode(raw_target) if raw_target
                  else (get("linktarget") or "").encode("utf-8", "surrogateescape"))
        content = get("content")
        subtree = get("subtree")
        name = obj["name"]
        unknown = obj.keys() - _KNOWN
        extra = {k: v for k, v in obj.items() if k in unknown} if unknown else {}
        return cls(
            name=go_unquote_name(name) if "\\" in name else name.encode("utf-8"),
            type=str(obj["type"]),
            mode=get("mode") or 0,
            mtime=get("mtime") or _ZERO_TIME,
            atime=get("atime") or _ZERO_TIME,
            ctime=get("ctime") or _ZERO_TIME,
            uid=get("uid") or 0,
            gid=get("gid") or 0,
            user=get("user") or "",
            group=get("group") or "",
            inode=get("inode") or 0,
            device_id=get("device_id") or 0,
            size=get("size") or 0,
            links=get("links") or 0,
            linktarget=target,
            extended_attributes=get("extended_attributes"),
            generic_attributes=get("generic_attributes"),
            device=get("device") or 0,
            content=None if content is None else [bytes.fromhex(c) for c in content],
            subtree=bytes.fromhex(subtree) if subtree else None,
            error=get("error") or "",
            extra=extra,
        )


_ZERO_TIME = "0001-01-01T00:00:00Z"
_KNOWN = frozenset({
    "name", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group",
    "inode", "device_id", "size", "links", "linktarget", "linktarget_raw",
    "extended_attributes", "generic_attributes", "device", "content", "subtree", "error",
})


def encode_tree(nodes: Sequence[Node | Mapping[str, Any]]) -> bytes:
    """Return a tree blob's bytes. A node may also be the JSON object it was read as (an
    unchanged file node kept from a parent snapshot): it is written from that object, with
    no round trip through :class:`Node`, and gives the same bytes as its Node would.
    Raise ValueError if names are not strictly increasing.
    """
    names = [n.name if isinstance(n, Node) else go_unquote_name(n["name"]) for n in nodes]
    for a, b in itertools.pairwise(names):
        if not a < b:
            raise ValueError(f"tree nodes not in strictly increasing order: {b!r}")
    # One encoder call per tree, not per node: the per-call overhead dominated.
    return gojson.dumps({"nodes": [n.to_json() if isinstance(n, Node) else n
                                   for n in nodes]}) + b"\n"


def decode_tree(data: bytes, what: str) -> list[Node]:
    """Parse a tree blob. Raise IntegrityError if it is not a valid tree."""
    try:
        obj = gojson.loads(data)
        return [Node.from_json(n) for n in (obj.get("nodes") or [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{what}: malformed tree") from exc
