"""``find``: search the snapshots for files and directories whose path matches a pattern, as
``restic find`` does (patterns as in ``--exclude``: ``*.txt`` matches at any depth, a match
on a directory covers what is below it; ``-i`` ignores case). Text: a "Found matching
entries" line per snapshot with hits, then the paths; ``--json``: restic's array of
``{"matches": [node…], "hits": N, "snapshot": ID}``."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any

from airflow_backup.archiver.patterns import PatternSet
from airflow_backup.cli.commands.common import add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.tree import Node, mode_string
from airflow_backup.restorer.walk import walk_tree

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``find`` parser."""
    p = sub.add_parser("find", help="find files in snapshots by pattern")
    p.add_argument("patterns", nargs="+", metavar="PATTERN",
                   help="patterns as for --exclude (e.g. '*.log', /etc/hosts)")
    p.add_argument("-i", "--ignore-case", action="store_true", help="ignore case")
    p.add_argument("-s", "--snapshot", action="append", default=[], metavar="ID",
                   help="only search this snapshot (repeatable; default: all that match "
                        "the filters)")
    p.add_argument("-R", "--reverse", action="store_true",
                   help="search the snapshots oldest first (default: youngest first)")
    add_filter_args(p)
    p.set_defaults(func=run)


def _node_json(path: str, node: Node) -> dict[str, Any]:
    """The node as restic's find prints it (its omitempty fields left out when empty)."""
    out: dict[str, Any] = {"path": path, "permissions": mode_string(node.mode),
                           "type": node.type, "mode": node.mode, "mtime": node.mtime,
                           "atime": node.atime, "ctime": node.ctime, "uid": node.uid,
                           "gid": node.gid}
    for key, value in (("user", node.user), ("group", node.group),
                       ("device_id", node.device_id),
                       ("size", node.size if node.type == "file" else 0),
                       ("links", node.links),
                       ("linktarget", os.fsdecode(node.linktarget or b""))):
        if value:
            out[key] = value
    return out


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Walk each selected snapshot (youngest first, as restic; oldest first with
    ``--reverse``) and print what matches."""
    fold = args.ignore_case
    patterns = PatternSet([p.lower() if fold else p for p in args.patterns])
    repo = open_repository(gopts)
    repo.load_index()
    results: list[dict[str, Any]] = []
    found = 0
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        snaps = [s for s in select_snapshots(repo, filter_from_args(args), args.snapshot)
                 if not s.damaged]
        # restic >= 0.17: youngest first (--reverse: oldest first); restic 0.14 went in
        # the order the backend listed the snapshot files.
        snaps.sort(key=lambda s: (s.time_ns, s.id), reverse=not args.reverse)
        for sn in snaps:
            matches = []
            for path, node in walk_tree(repo, sn.tree):
                shown = os.fsdecode(path)
                if patterns.matches(shown.lower() if fold else shown):
                    matches.append((shown, node))
            if not matches:
                continue
            if out.json_mode:
                results.append({"matches": [_node_json(p, n) for p, n in matches],
                                "hits": len(matches), "snapshot": sn.id})
                continue
            when = datetime.fromisoformat(sn.time.replace("Z", "+00:00")).astimezone()
            if found:
                out.result("")  # restic separates the snapshots' blocks by a blank line
            found += 1
            out.result(f"Found matching entries in snapshot {sn.short_id} from "
                       f"{when:%Y-%m-%d %H:%M:%S}")
            for shown, _ in matches:
                out.result(shown)
    if out.json_mode:
        out.json(results)
    return 0
