"""``restore``: write a snapshot, or part of it, into a target directory."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from airflow_backup.cli.commands.common import add_as_of_arg, add_filter_args, filter_from_args
from airflow_backup.cli.commands.source_restore import add_arguments, wants
from airflow_backup.cli.commands.source_restore import run as restore_into_source
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import EXIT_OK, EXIT_PARTIAL, ConfigError
from airflow_backup.operations.restore import RestoreOutcome, RestoreRequest, restore

EPILOG = """A damaged repository restores as much as it can: every file whose data is intact
is restored. Each item that is not (its pack missing or damaged, its directory's tree
unreadable, an unsafe name in the snapshot, a failed write, a --verify mismatch) is named
on stderr as 'PATH: reason' (with --json: {"message_type":"error","error":{"message":...},
"during":"restore","item":PATH}); a file that could not be fully written is removed.

exit status: 0 ok, 1 error (the restore could not start, or stopped), 3 partial restore
(some items were skipped, see stderr), 10 no repository, 11 repository locked, 12 wrong
password, 130 interrupted"""


def register(sub: Any) -> None:
    """Add the ``restore`` parser."""
    p = sub.add_parser("restore", help="restore a snapshot into a directory",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshot", nargs="?", default="",
                   help="snapshot id prefix or 'latest', optionally ID:SUBPATH to restore only "
                        "that sub-directory (may be omitted, or 'latest[:SUBPATH]', with "
                        "--as-of)")
    p.add_argument("-t", "--target", required=True, help="directory to restore into")
    p.add_argument("-i", "--include", action="append", default=[], metavar="PATTERN",
                   help="restore only paths matching PATTERN (repeatable)")
    p.add_argument("-e", "--exclude", action="append", default=[], metavar="PATTERN",
                   help="do not restore paths matching PATTERN (repeatable)")
    p.add_argument("--verify", action="store_true",
                   help="read every restored file back and compare it with the snapshot's "
                        "data; a file that differs is removed and reported (exit status 3)")
    add_filter_args(p)
    add_as_of_arg(p)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Restore and report what was written; exit 3 if some items were skipped."""
    if not args.target:
        raise ConfigError("--target must not be empty")
    if wants(args):  # a data-source URL (postgresql://, s3://, …)
        if args.verify:
            raise ConfigError("--verify is for a directory restore; a data-source restore "
                              "always compares row counts and checksums")
        return restore_into_source(args, gopts, out)
    request = RestoreRequest(target=args.target, snapshot=args.snapshot,
                             filter=filter_from_args(args), as_of=args.as_of or "",
                             includes=tuple(args.include), excludes=tuple(args.exclude),
                             verify=args.verify)
    repo = open_repository(gopts)
    started = time.monotonic()
    outcome = restore(repo, request, lock_wait=gopts.retry_lock,
                      on_selected=lambda sn: out.line(
                          f"restoring snapshot {sn.short_id} of {sn.paths} at {sn.time} to "
                          f"{args.target}"))
    elapsed = time.monotonic() - started
    _report_skipped(outcome, out)
    if out.json_mode:
        summary: dict[str, Any] = {
            "message_type": "summary", "snapshot_id": outcome.snapshot_id,
            "files_restored": outcome.files, "dirs_restored": outcome.dirs,
            "bytes_restored": outcome.bytes, "total_errors": len(outcome.errors),
            "total_duration": elapsed}
        if args.verify:
            summary["files_verified"] = outcome.verified
        out.json(summary)
    else:
        out.line(f"restored {outcome.files} files, {outcome.dirs} dirs, {outcome.others} "
                 f"others, {human_size(outcome.bytes)} in {elapsed:.2f}s")
        if args.verify:
            out.line(f"verified {outcome.verified} files")
    if outcome.errors:
        if not out.json_mode:
            out.warn(f"Warning: {len(outcome.errors)} item(s) could not be restored")
        return EXIT_PARTIAL
    return EXIT_OK


def _report_skipped(outcome: RestoreOutcome, out: Printer) -> None:
    """Name each item that was not restored on stderr, as restic does."""
    for path, reason in outcome.errors:
        if out.json_mode:
            out.warn(json.dumps({"message_type": "error", "error": {"message": reason},
                                 "during": "restore", "item": path}))
        else:
            out.warn(f"{path}: {reason}")
