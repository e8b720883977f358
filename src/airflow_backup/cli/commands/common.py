"""Argument helpers shared by commands that select snapshots."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.repository.select import SnapshotFilter
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["add_filter_args", "filter_from_args", "snapshot_json"]


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """Add restic's --host/--tag/--path snapshot filters."""
    parser.add_argument("-H", "--host", action="append", default=[],
                        help="only consider snapshots from this host (repeatable)")
    parser.add_argument("--tag", action="append", default=[], metavar="TAG[,TAG]",
                        help="only consider snapshots with all these tags (repeatable: any)")
    parser.add_argument("--path", action="append", default=[],
                        help="only consider snapshots that include this path (repeatable)")


def filter_from_args(args: argparse.Namespace) -> SnapshotFilter:
    """Build a SnapshotFilter from parsed filter arguments."""
    return SnapshotFilter(hosts=list(args.host), tags=list(args.tag), paths=list(args.path))


def snapshot_json(sn: Snapshot) -> dict[str, Any]:
    """Return a snapshot as restic's ``snapshots --json`` shows it (with id and short_id)."""
    obj = sn.to_json()
    obj["id"] = sn.id
    obj["short_id"] = sn.short_id
    return obj
