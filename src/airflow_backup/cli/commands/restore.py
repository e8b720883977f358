"""``restore``: write a snapshot, or part of it, into a target directory."""

from __future__ import annotations

import argparse
import time
from typing import Any

from airflow_backup.cli.commands import source_restore
from airflow_backup.cli.commands.common import add_as_of_arg, add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import ConfigError
from airflow_backup.repository.select import resolve_snapshot
from airflow_backup.restorer.restore import RestoreOptions, Restorer


def register(sub: Any) -> None:
    """Add the ``restore`` parser."""
    p = sub.add_parser("restore", help="restore a snapshot into a directory")
    p.add_argument("snapshot", nargs="?", default="",
                   help="snapshot id prefix or 'latest', optionally ID:SUBPATH to restore only "
                        "that sub-directory (may be omitted, or 'latest[:SUBPATH]', with "
                        "--as-of)")
    p.add_argument("-t", "--target", required=True, help="directory to restore into")
    p.add_argument("-i", "--include", action="append", default=[], metavar="PATTERN",
                   help="restore only paths matching PATTERN (repeatable)")
    p.add_argument("-e", "--exclude", action="append", default=[], metavar="PATTERN",
                   help="do not restore paths matching PATTERN (repeatable)")
    add_filter_args(p)
    add_as_of_arg(p)
    source_restore.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Restore and report what was written."""
    if not args.target:
        raise ConfigError("--target must not be empty")
    if source_restore.wants(args):  # a data-source URL (postgresql://, s3://, …)
        return source_restore.run(args, gopts, out)
    selector, _, subpath = args.snapshot.partition(":")
    repo = open_repository(gopts)
    started = time.monotonic()
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        sn = resolve_snapshot(repo, selector, filter_from_args(args), args.as_of)
        out.line(f"restoring snapshot {sn.short_id} of {sn.paths} at {sn.time} to {args.target}")
        stats = Restorer(repo).restore(sn, RestoreOptions(
            target=args.target, includes=list(args.include), excludes=list(args.exclude),
            subpath=subpath or "/"))
    elapsed = time.monotonic() - started
    if out.json_mode:
        out.json({"message_type": "summary", "snapshot_id": sn.id, "files_restored": stats.files,
                  "dirs_restored": stats.dirs, "bytes_restored": stats.bytes,
                  "total_duration": elapsed})
    else:
        out.line(f"restored {stats.files} files, {stats.dirs} dirs, {stats.others} others, "
                 f"{human_size(stats.bytes)} in {elapsed:.2f}s")
    return 0
