"""``restore``: write a snapshot, or part of it, into a target directory."""

from __future__ import annotations

import argparse
import time
from typing import Any

from airflow_backup.cli.commands.common import add_as_of_arg, add_filter_args, filter_from_args
from airflow_backup.cli.commands.source_restore import add_arguments, wants
from airflow_backup.cli.commands.source_restore import run as restore_into_source
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import ConfigError
from airflow_backup.operations.restore import RestoreRequest, restore


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
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Restore and report what was written."""
    if not args.target:
        raise ConfigError("--target must not be empty")
    if wants(args):  # a data-source URL (postgresql://, s3://, …)
        return restore_into_source(args, gopts, out)
    request = RestoreRequest(target=args.target, snapshot=args.snapshot,
                             filter=filter_from_args(args), as_of=args.as_of or "",
                             includes=tuple(args.include), excludes=tuple(args.exclude))
    repo = open_repository(gopts)
    started = time.monotonic()
    outcome = restore(repo, request, lock_wait=gopts.retry_lock,
                      on_selected=lambda sn: out.line(
                          f"restoring snapshot {sn.short_id} of {sn.paths} at {sn.time} to "
                          f"{args.target}"))
    elapsed = time.monotonic() - started
    if out.json_mode:
        out.json({"message_type": "summary", "snapshot_id": outcome.snapshot_id,
                  "files_restored": outcome.files, "dirs_restored": outcome.dirs,
                  "bytes_restored": outcome.bytes, "total_duration": elapsed})
    else:
        out.line(f"restored {outcome.files} files, {outcome.dirs} dirs, {outcome.others} "
                 f"others, {human_size(outcome.bytes)} in {elapsed:.2f}s")
    return 0
