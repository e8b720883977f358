"""``snapshots``: list snapshots."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import add_filter_args, filter_from_args, snapshot_json
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.timefmt import parse_time


def register(sub: Any) -> None:
    """Add the ``snapshots`` parser."""
    p = sub.add_parser("snapshots", help="list snapshots")
    p.add_argument("ids", nargs="*", help="only these snapshots (id prefixes or 'latest')")
    add_filter_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the snapshots, oldest first (restic's table, or its JSON list)."""
    repo = open_repository(gopts)
    snaps = select_snapshots(repo, filter_from_args(args), list(args.ids))
    if out.json_mode:
        out.json([snapshot_json(s) for s in snaps])
        return 0
    rows = []
    for s in snaps:
        when = parse_time(s.time).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append([s.short_id, when, s.hostname, ",".join(s.tags), "\n".join(s.paths)])
    expanded = []
    for r in rows:
        paths = r[4].split("\n")
        expanded.append([*r[:4], paths[0]])
        expanded += [["", "", "", "", p] for p in paths[1:]]
    out.table(["ID", "Time", "Host", "Tags", "Paths"], expanded)
    out.result(f"{len(snaps)} snapshots")
    return 0
