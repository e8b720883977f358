"""``tag``: add, remove or set the tags of snapshots, as restic's ``tag`` (the snapshots
are named by id, or are all that match the filters)."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.tagging import TagChange, retag

__all__ = ["register", "run"]


def _tags(groups: list[str]) -> tuple[str, ...]:
    return tuple(t for g in groups for t in g.split(",") if t)


def register(sub: Any) -> None:
    """Add the ``tag`` parser."""
    p = sub.add_parser("tag", help="add, remove or set the tags of snapshots")
    p.add_argument("ids", nargs="*", help="snapshots (id prefixes or 'latest'); default: all "
                                          "that match the filters")
    add_filter_args(p)
    p.add_argument("--set", action="append", default=None, metavar="TAG[,TAG]",
                   help="replace the tags with these (repeatable)")
    p.add_argument("--add", action="append", default=[], metavar="TAG[,TAG]",
                   help="add these tags (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="TAG[,TAG]",
                   help="remove these tags (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Change the tags under an exclusive lock; report how many snapshots changed."""
    change = TagChange(set=_tags(args.set) if args.set is not None else None,
                       add=_tags(args.add), remove=_tags(args.remove))
    repo = open_repository(gopts)
    with repo.lock(exclusive=True, retry_seconds=gopts.retry_lock):
        snaps = [s for s in select_snapshots(repo, filter_from_args(args), list(args.ids))
                 if not s.damaged]
        changed = retag(repo, snaps, change)
    if out.json_mode:  # restic's messages: one "changed" per snapshot, then a summary
        for old, new in changed:
            out.json({"message_type": "changed", "old_snapshot_id": old,
                      "new_snapshot_id": new})
        out.json({"message_type": "summary", "changed_snapshots": len(changed)})
    else:
        for old, new in changed:
            out.info(f"old snapshot ID: {old} -> new snapshot ID: {new}")
        out.result(f"modified tags on {len(changed)} snapshots")
    return 0
