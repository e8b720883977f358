"""``diff``: show what changed between two snapshots (restic's modifiers +, -, M, T, U)."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import add_as_of_arg, add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import ConfigError
from airflow_backup.repository.diff import DiffStats, diff_snapshots
from airflow_backup.repository.select import resolve_snapshot

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``diff`` parser."""
    p = sub.add_parser("diff", help="show differences between two snapshots",
                       description="diff A B compares snapshot A to B. With --as-of TIME give "
                       "only B: A is the newest snapshot at or before TIME.")
    p.add_argument("snapshots", nargs="+", metavar="SNAPSHOT",
                   help="two snapshots (id prefix or 'latest'), or one with --as-of")
    p.add_argument("--metadata", action="store_true",
                   help="also show metadata-only changes (U)")
    add_as_of_arg(p)
    add_filter_args(p)
    p.set_defaults(func=run)


def _stats_json(s: DiffStats) -> dict[str, int]:
    return {"files": s.files, "dirs": s.dirs, "others": s.others, "data_blobs": s.data_blobs,
            "tree_blobs": s.tree_blobs, "bytes": s.bytes}


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the changes and a summary."""
    wanted = 1 if args.as_of else 2
    if len(args.snapshots) != wanted:
        raise ConfigError("diff needs two snapshots, or one snapshot and --as-of TIME")
    repo = open_repository(gopts)
    flt = filter_from_args(args)
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        if args.as_of:
            a = resolve_snapshot(repo, None, flt, args.as_of)
            b = resolve_snapshot(repo, args.snapshots[0], flt)
        else:
            a, b = (resolve_snapshot(repo, s, flt) for s in args.snapshots)
        result = diff_snapshots(repo, a, b, metadata=args.metadata)
    if out.json_mode:
        for c in result.changes:
            out.json({"message_type": "change", "path": c.path, "modifier": c.modifier})
        out.json({"message_type": "statistics", "source_snapshot": a.id,
                  "target_snapshot": b.id, "changed_files": result.changed_files,
                  "added": _stats_json(result.added), "removed": _stats_json(result.removed)})
        return 0
    out.line(f"comparing snapshot {a.short_id} to {b.short_id}:")
    out.line()
    for c in result.changes:
        out.result(f"{c.modifier:<5}{c.path}")
    out.line()
    out.line(f"Files:       {result.added.files:>5} new, {result.removed.files:>5} removed, "
             f"{result.changed_files:>5} changed")
    out.line(f"Dirs:        {result.added.dirs:>5} new, {result.removed.dirs:>5} removed")
    out.line(f"Others:      {result.added.others:>5} new, {result.removed.others:>5} removed")
    out.line(f"Data Blobs:  {result.added.data_blobs:>5} new, "
             f"{result.removed.data_blobs:>5} removed")
    out.line(f"Tree Blobs:  {result.added.tree_blobs:>5} new, "
             f"{result.removed.tree_blobs:>5} removed")
    out.line(f"  Added:   {human_size(result.added.bytes)}")
    out.line(f"  Removed: {human_size(result.removed.bytes)}")
    return 0
