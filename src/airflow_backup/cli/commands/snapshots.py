"""``snapshots``: list snapshots, optionally grouped and limited to the latest N per group."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import (
    add_filter_args,
    filter_from_args,
    snapshot_json,
    snapshot_rows,
)
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError
from airflow_backup.repository.groups import group_snapshots, parse_group_by
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.snapshot import Snapshot


def register(sub: Any) -> None:
    """Add the ``snapshots`` parser."""
    p = sub.add_parser("snapshots", help="list snapshots")
    p.add_argument("ids", nargs="*", help="only these snapshots (id prefixes or 'latest')")
    add_filter_args(p)
    p.add_argument("-g", "--group-by", default="",
                   help="group snapshots by host, paths and/or tags, comma-separated")
    p.add_argument("--latest", type=int, default=0, metavar="N",
                   help="only show the last N snapshots for each host and path")
    p.add_argument("-c", "--compact", action="store_true",
                   help="without paths (a line per tag), as restic's --compact")
    p.set_defaults(func=run)


def latest_per_host_and_paths(snaps: list[Snapshot], n: int) -> list[Snapshot]:
    """Given snapshots, return the newest ``n`` for each host and set of paths, oldest
    first (restic's ``--latest``)."""
    per_key: dict[tuple[str, tuple[str, ...]], list[Snapshot]] = {}
    for sn in sorted(snaps, key=lambda s: (s.time_ns, s.id), reverse=True):
        bucket = per_key.setdefault((sn.hostname, tuple(sorted(sn.paths))), [])
        if len(bucket) < n:
            bucket.append(sn)
    return sorted((s for b in per_key.values() for s in b), key=lambda s: (s.time_ns, s.id))


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the snapshots, oldest first (restic's table, or its JSON list; grouped output
    is a list of ``{"group_key", "snapshots"}``). Damaged snapshot files are left out, each
    named in a warning on stderr."""
    if args.latest < 0:
        raise ConfigError("--latest must not be negative")
    group_by = parse_group_by(args.group_by)
    repo = open_repository(gopts)
    # Damaged snapshot files are skipped with a warning (by the listing, or here for one
    # named by id: it has no time, host or paths to show).
    snaps = []
    for sn in select_snapshots(repo, filter_from_args(args), list(args.ids)):
        if sn.damaged:
            out.warn(f"skipping damaged snapshot file: {sn.damaged}")
        else:
            snaps.append(sn)
    groups = group_snapshots(snaps, group_by) if not args.ids else [(None, snaps)]
    shown = []
    for key, members in groups:
        if args.latest:
            members = latest_per_host_and_paths(members, args.latest)
        shown.append((key, members))
    if out.json_mode:
        if group_by and not args.ids:
            out.json([{"group_key": key.to_json() if key else None,
                       "snapshots": [snapshot_json(s) for s in members]}
                      for key, members in shown])
        else:
            out.json([snapshot_json(s) for _, members in shown for s in members])
        return 0
    for key, members in shown:
        if group_by and key is not None and not args.ids:
            heading = group_heading(key.to_json())
            if heading:
                out.result(heading)
        headers, rows = snapshot_rows(members, compact=args.compact)
        # restic 0.14: a blank line between snapshots once one of them lists several paths
        multiline = not args.compact and any(len(s.paths) > 1 for s in members)
        out.table(headers, rows, blank_between_records=multiline)
        out.result(f"{len(members)} snapshots")  # per group, as restic's footer
    return 0


def group_heading(key: dict[str, Any]) -> str:
    """Return restic 0.14's heading of a group of snapshots, ``snapshots for (host [h], tags
    [a, b], paths [/x, /y]):`` naming only what the group has, or "" for a group without
    any (restic prints none)."""
    parts = []
    if key.get("hostname"):
        parts.append(f"host [{key['hostname']}]")
    if key.get("tags"):
        parts.append(f"tags [{', '.join(key['tags'])}]")
    if key.get("paths"):
        parts.append(f"paths [{', '.join(key['paths'])}]")
    return f"snapshots for ({', '.join(parts)}):" if parts else ""
