"""``ls``: list the files of a snapshot."""

from __future__ import annotations

import argparse
import os
from typing import Any

from airflow_backup.cli.commands.common import (
    add_as_of_arg,
    add_filter_args,
    filter_from_args,
    snapshot_json,
)
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.repository.select import resolve_snapshot
from airflow_backup.repository.tree import mode_string, posix_mode
from airflow_backup.restorer.walk import walk_tree

_TYPE_CHAR = {"dir": "d", "symlink": "L", "fifo": "p", "socket": "S", "dev": "D",
              "chardev": "c"}


def register(sub: Any) -> None:
    """Add the ``ls`` parser."""
    p = sub.add_parser("ls", help="list files in a snapshot")
    p.add_argument("snapshot", nargs="?", default="",
                   help="snapshot id prefix or 'latest' (may be omitted with --as-of)")
    p.add_argument("dirs", nargs="*", help="only list below these snapshot paths")
    p.add_argument("-l", "--long", action="store_true", help="long listing")
    p.add_argument("--recursive", action="store_true",
                   help="with directories: also list what is in their subdirectories "
                        "(default: the directories and their entries, as restic)")
    add_filter_args(p)
    add_as_of_arg(p)
    p.set_defaults(func=run)


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _has_prefix(prefix: str, path: str) -> bool:
    return path == prefix or prefix == "/" or path.startswith(prefix + "/")


def _listed(path: str, dirs: list[str], recursive: bool) -> bool:
    """Whether restic's ``ls`` prints ``path`` given directory arguments: it is within one
    of them and the walk descends into its parent (the parent is within one and
    ``recursive``, or leads to one)."""
    if not dirs:
        return True
    if not any(_has_prefix(d, path) for d in dirs):
        return False
    parent = path.rsplit("/", 1)[0] or "/"
    if parent == "/" and path.count("/") == 1:
        return True  # a top-level entry: the walk always starts at the root
    return (recursive and any(_has_prefix(d, parent) for d in dirs)) or \
        any(_has_prefix(parent, d) for d in dirs)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print every path of the snapshot (restic's ``ls`` text or JSON lines)."""
    selector, dirs = args.snapshot, list(args.dirs)
    if args.as_of and selector.startswith("/"):
        selector, dirs = "", [selector, *dirs]  # `ls --as-of T /dir`: the first word is a dir
    repo = open_repository(gopts)
    repo.load_index()
    sn = resolve_snapshot(repo, selector, filter_from_args(args), args.as_of)
    prefixes = [d.rstrip("/") or "/" for d in dirs]
    if out.json_mode:
        obj = snapshot_json(sn)
        # restic >= 0.17: message_type; struct_type (restic 0.14's only one) is deprecated.
        obj["message_type"] = "snapshot"
        obj["struct_type"] = "snapshot"
        out.json(obj)
    else:
        out.line(f"snapshot {sn.short_id} of {sn.paths} at {sn.time}:")
    for path, node in walk_tree(repo, sn.tree):
        shown = _show(path)
        if not _listed(shown, prefixes, args.recursive):
            continue
        if out.json_mode:
            entry: dict[str, Any] = {"name": _show(node.name), "type": node.type, "path": shown,
                                     "uid": node.uid, "gid": node.gid}
            if node.type == "file":
                entry["size"] = node.size
            entry.update({"mode": node.mode, "permissions": mode_string(node.mode),
                          "mtime": node.mtime, "atime": node.atime, "ctime": node.ctime})
            if node.inode:  # restic >= 0.17 (omitted when 0)
                entry["inode"] = node.inode
            entry.update({"message_type": "node", "struct_type": "node"})
            out.json(entry)
        elif args.long:
            kind = _TYPE_CHAR.get(node.type, "-")
            perm = posix_mode(node.mode) & 0o777
            bits = "".join(c if perm & (1 << (8 - i)) else "-" for i, c in enumerate("rwx" * 3))
            target = f" -> {_show(node.linktarget)}" if node.type == "symlink" else ""
            out.result(f"{kind}{bits} {node.user or node.uid:>8} {node.group or node.gid:>8} "
                       f"{node.size:>12} {node.mtime[:19].replace('T', ' ')} {shown}{target}")
        else:
            out.result(shown)
    return 0
