"""Argument helpers shared by commands that select snapshots."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.repository.select import SnapshotFilter
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import parse_time

__all__ = [
    "add_as_of_arg",
    "add_filter_args",
    "filter_from_args",
    "snapshot_file_json",
    "snapshot_json",
    "snapshot_rows",
]


def add_filter_args(parser: argparse.ArgumentParser, host_short: bool = True) -> None:
    """Add restic's --host/--tag/--path snapshot filters (``-H`` for --host unless
    ``host_short`` is False, as in ``forget`` where ``-H`` is --keep-hourly)."""
    names = ["-H", "--host"] if host_short else ["--host"]
    parser.add_argument(*names, action="append", default=[],
                        help="only consider snapshots from this host (repeatable)")
    parser.add_argument("--tag", action="append", default=[], metavar="TAG[,TAG]",
                        help="only consider snapshots with all these tags (repeatable: any)")
    parser.add_argument("--path", action="append", default=[],
                        help="only consider snapshots that include this path (repeatable)")


def add_as_of_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--as-of TIME``: pick the newest snapshot at or before TIME (after filters)."""
    parser.add_argument("--as-of", default="", metavar="TIME",
                        help="use the newest snapshot taken at or before TIME "
                             "('YYYY-MM-DD HH:MM:SS' local, 'YYYY-MM-DD', or RFC 3339), "
                             "after the --host/--tag/--path filters")


def snapshot_rows(snaps: list[Snapshot], reasons: dict[str, list[str]] | None = None,
                  compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Return table headers and rows for snapshots (restic's columns; a Reasons column when
    ``reasons`` maps snapshot ids to why they are kept; ``compact``: no Paths column and a
    line per tag, as ``restic snapshots --compact``). Headers are padded as restic 0.14 pads
    them (``Host      ``, ``Tags      ``; compact ``Tags  ``): its columns are at least that
    wide."""
    tags_header = "Tags  " if compact else "Tags      "
    headers = (["ID", "Time", "Host" if compact else "Host      ", tags_header]
               + (["Reasons"] if reasons is not None else []))
    rows = []
    for s in snaps:
        when = parse_time(s.time).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        extra = [", ".join(reasons.get(s.id, []))] if reasons is not None else []
        if compact:  # restic's compact form: a line per tag instead of a Paths column
            tags = list(s.tags) or [""]
            rows.append([s.short_id, when, s.hostname, tags[0], *extra])
            rows += [["", "", "", t, *[""] * len(extra)] for t in tags[1:]]
            continue
        paths = sorted(s.paths) or [""]
        rows.append([s.short_id, when, s.hostname, ",".join(s.tags), *extra, paths[0]])
        pad = [""] * (len(headers))
        rows += [[*pad, p] for p in paths[1:]]
    return (headers if compact else [*headers, "Paths"]), rows


def filter_from_args(args: argparse.Namespace) -> SnapshotFilter:
    """Build a SnapshotFilter from parsed filter arguments."""
    return SnapshotFilter(hosts=list(args.host), tags=list(args.tag), paths=list(args.path))


#: Snapshot fields Go's encoder leaves out when empty or zero (``omitempty`` in restic's
#: Snapshot struct); restic prints a snapshot through that struct.
_OMIT_EMPTY = ("hostname", "username", "uid", "gid")


def snapshot_file_json(sn: Snapshot) -> dict[str, Any]:
    """Return a snapshot as restic prints it (``cat snapshot``): its file's fields, those
    Go leaves out when zero or empty left out."""
    obj = sn.to_json()
    for key in _OMIT_EMPTY:
        if key in obj and not obj[key]:
            del obj[key]
    return obj


def snapshot_json(sn: Snapshot) -> dict[str, Any]:
    """Return a snapshot as restic's ``snapshots --json`` shows it (with id and short_id)."""
    obj = snapshot_file_json(sn)
    obj["id"] = sn.id
    obj["short_id"] = sn.short_id
    return obj
