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
from typing import TypeGuard

from airflow_backup.errors import IntegrityError
from airflow_backup.jsontypes import JSONObject, JSONValue
from airflow_backup.repository import gojson
from airflow_backup.repository.gojson import go_unquote_name

__all__ = ["Node", "decode_tree", "encode_tree", "go_mode", "mode_string", "posix_mode"]

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


def mode_string(mode: int) -> str:
    """Return a Go ``fs.FileMode`` as Go's ``String()`` writes it (restic's ``permissions``
    in ``ls --json``): type letters ``dalTLDpSugct?`` for the set high bits (``-`` if
    none), then ``rwxrwxrwx`` with ``-`` for each clear bit."""
    kinds = "".join(c for i, c in enumerate("dalTLDpSugct?") if mode & (1 << (31 - i)))
    bits = "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (kinds or "-") + bits


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
    """One entry of a tree. ``name`` and ``linktarget`` are raw bytes; extended and generic
    attributes and fields restic added after this version (``extra``) are kept as read."""

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
    extended_attributes: list[JSONObject] | None = None
    generic_attributes: JSONObject | None = None
    device: int = 0
    content: list[bytes] | None = None
    subtree: bytes | None = None
    error: str = ""
    extra: JSONObject = field(default_factory=dict)

    def to_json(self) -> JSONObject:
        """Return the node as restic's JSON object, fields in Go order, omitempty honoured."""
        out: JSONObject = {"name": gojson.go_quote_name(self.name), "type": self.type}
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
            out["extended_attributes"] = list(self.extended_attributes)
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
    def from_json(cls, obj: JSONObject) -> Node:
        """Parse one node as written by restic or by us. A null or absent field is its zero
        value, as in Go. Raise KeyError, TypeError or ValueError if the node is malformed
        (a field of the wrong JSON type included)."""
        get = obj.get
        name = obj["name"]
        ntype = obj["type"]
        mode = get("mode") or 0
        mtime = get("mtime") or _ZERO_TIME
        atime = get("atime") or _ZERO_TIME
        ctime = get("ctime") or _ZERO_TIME
        uid = get("uid") or 0
        gid = get("gid") or 0
        user = get("user") or ""
        group = get("group") or ""
        inode = get("inode") or 0
        device_id = get("device_id") or 0
        size = get("size") or 0
        links = get("links") or 0
        device = get("device") or 0
        error = get("error") or ""
        raw_target = get("linktarget_raw") or ""
        target = get("linktarget") or ""
        content = get("content")
        subtree = get("subtree") or ""
        # One test for every scalar field: this runs for every node read.
        if not (isinstance(name, str) and isinstance(ntype, str) and isinstance(mode, int)
                and isinstance(mtime, str) and isinstance(atime, str)
                and isinstance(ctime, str) and isinstance(uid, int) and isinstance(gid, int)
                and isinstance(user, str) and isinstance(group, str)
                and isinstance(inode, int) and isinstance(device_id, int)
                and isinstance(size, int) and isinstance(links, int)
                and isinstance(device, int) and isinstance(error, str)
                and isinstance(raw_target, str) and isinstance(target, str)
                and isinstance(subtree, str)):
            raise TypeError("tree node field of the wrong type")
        ids: list[bytes] | None = None
        if content is not None:
            if not isinstance(content, list):
                raise TypeError("tree node content is not a list")
            ids = [bytes.fromhex(c) for c in content if isinstance(c, str)]
            if len(ids) != len(content):
                raise TypeError("tree node content holds a non-string")
        xattrs = get("extended_attributes")
        if xattrs is not None and not _is_object_list(xattrs):
            raise TypeError("tree node extended_attributes is not a list of objects")
        generic = get("generic_attributes")
        if generic is not None and not isinstance(generic, dict):
            raise TypeError("tree node generic_attributes is not an object")
        unknown = obj.keys() - _KNOWN
        extra = {k: v for k, v in obj.items() if k in unknown} if unknown else {}
        return cls(
            name=go_unquote_name(name) if "\\" in name else name.encode("utf-8"),
            type=ntype,
            mode=mode,
            mtime=mtime,
            atime=atime,
            ctime=ctime,
            uid=uid,
            gid=gid,
            user=user,
            group=group,
            inode=inode,
            device_id=device_id,
            size=size,
            links=links,
            linktarget=(base64.b64decode(raw_target) if raw_target
                        else target.encode("utf-8", "surrogateescape")),
            extended_attributes=xattrs,
            generic_attributes=generic,
            device=device,
            content=ids,
            subtree=bytes.fromhex(subtree) if subtree else None,
            error=error,
            extra=extra,
        )


def _is_object_list(value: JSONValue) -> TypeGuard[list[JSONObject]]:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


_ZERO_TIME = "0001-01-01T00:00:00Z"
_KNOWN = frozenset({
    "name", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group",
    "inode", "device_id", "size", "links", "linktarget", "linktarget_raw",
    "extended_attributes", "generic_attributes", "device", "content", "subtree", "error",
})


def encode_tree(nodes: Sequence[Node | Mapping[str, JSONValue]]) -> bytes:
    """Return a tree blob's bytes. A node may also be the JSON object it was read as (an
    unchanged file node kept from a parent snapshot): it is written from that object, with
    no round trip through :class:`Node`, and gives the same bytes as its Node would.
    Raise ValueError if names are not strictly increasing or such an object's name is not a
    string.
    """
    names = [n.name if isinstance(n, Node) else _json_name(n) for n in nodes]
    for a, b in itertools.pairwise(names):
        if not a < b:
            raise ValueError(f"tree nodes not in strictly increasing order: {b!r}")
    # One encoder call per tree, not per node: the per-call overhead dominated.
    return gojson.dumps({"nodes": [n.to_json() if isinstance(n, Node) else n
                                   for n in nodes]}) + b"\n"


def _json_name(obj: Mapping[str, JSONValue]) -> bytes:
    name = obj["name"]
    if not isinstance(name, str):
        raise ValueError("tree node name is not a string")
    return go_unquote_name(name)


def decode_tree(data: bytes, what: str) -> list[Node]:
    """Parse a tree blob. Raise IntegrityError if it is not a valid tree."""
    try:
        obj = gojson.loads(data)
        return [Node.from_json(n) for n in (obj.get("nodes") or [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{what}: malformed tree") from exc
