"""``restore``: write a snapshot, or part of it, into a target directory."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from airflow_backup.cli.commands.common import add_as_of_arg, add_filter_args, filter_from_args
from airflow_backup.cli.commands.source_restore import add_arguments, wants
from airflow_backup.cli.commands.source_restore import run as restore_into_source
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, duration, human_size
from airflow_backup.cli.progress import progress_fps
from airflow_backup.errors import EXIT_OK, EXIT_PARTIAL, ConfigError
from airflow_backup.operations.restore import RestoreOutcome, RestoreRequest, restore
from airflow_backup.restorer.restore import NO_SIZE, OVERWRITE_MODES, RestoreStats

EPILOG = """A damaged repository restores as much as it can: every file whose data is intact
is restored. Each item that is not (its pack missing or damaged, its directory's tree
unreadable, an unsafe name in the snapshot, a failed write, a --verify mismatch) is named
on stderr as 'PATH: reason' (with --json: {"message_type":"error","error":{"message":...},
"during":"restore","item":PATH}); a file that could not be fully written is removed.

restic's restore flags: --dry-run changes nothing and reports what a restore would do (with
-vv each item: 'restored', 'updated', 'unchanged' or 'deleted', as restic prints them; with
--json and -vv as verbose_status lines); --overwrite always|if-changed|if-newer|never decides
for files already in the target (default always: a file whose content already matches is
left as it is and counted as skipped, any other is rewritten); --delete removes what the
snapshot does not hold from the restored directories (only what --include/--exclude select;
check with --dry-run -vv first); --sparse leaves holes for runs of zeros. SNAPSHOT:SUBFOLDER
restores the contents of SUBFOLDER into the target, and its --include/--exclude patterns are
relative to SUBFOLDER (/foo for SUBFOLDER/foo), as in restic >= 0.16.

examples:
  airflow-backup restore latest --target /tmp/restore
  airflow-backup restore latest:/home/user/work --target /tmp/work --include /foo
  airflow-backup restore latest --target /srv/data --overwrite if-newer --dry-run -vv
  airflow-backup restore latest:/srv/data --target /srv/data --delete --dry-run -vv
  airflow-backup restore latest --target /tmp/restore --sparse --json

exit status: 0 ok, 1 error (the restore could not start, or stopped), 3 partial restore
(some items were skipped, see stderr), 10 no repository, 11 repository locked, 12 wrong
password, 130 interrupted"""


def register(sub: Any) -> None:
    """Add the ``restore`` parser."""
    p = sub.add_parser("restore", help="restore a snapshot into a directory",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshot", nargs="?", default="",
                   help="snapshot id prefix or 'latest', optionally ID:SUBFOLDER to restore "
                        "the contents of that directory into the target (may be omitted, or "
                        "'latest[:SUBFOLDER]', with --as-of)")
    p.add_argument("-t", "--target", required=True, help="directory to restore into")
    p.add_argument("-i", "--include", action="append", default=[], metavar="PATTERN",
                   help="restore only paths matching PATTERN (repeatable)")
    p.add_argument("-e", "--exclude", action="append", default=[], metavar="PATTERN",
                   help="do not restore paths matching PATTERN (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="do not write any data, just show what would be done (each item with "
                        "-vv)")
    p.add_argument("--overwrite", choices=OVERWRITE_MODES, default="always",
                   metavar="{" + ",".join(OVERWRITE_MODES) + "}",
                   help="what to do with files already in the target (default: always)")
    p.add_argument("--delete", action="store_true",
                   help="delete files from the target directory if they do not exist in the "
                        "snapshot; use '--dry-run -vv' to check what would be deleted")
    p.add_argument("--sparse", action="store_true", help="restore files as sparse")
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
        if args.dry_run or args.delete or args.sparse or args.overwrite != "always":
            raise ConfigError("--dry-run, --overwrite, --delete and --sparse are for a "
                              "directory restore")
        return restore_into_source(args, gopts, out)
    if args.dry_run and args.verify:
        raise ConfigError("--dry-run and --verify are mutually exclusive")
    if args.include and args.exclude:
        raise ConfigError("exclude and include patterns are mutually exclusive")
    request = RestoreRequest(target=args.target, snapshot=args.snapshot,
                             filter=filter_from_args(args), as_of=args.as_of or "",
                             includes=tuple(args.include), excludes=tuple(args.exclude),
                             verify=args.verify, dry_run=args.dry_run,
                             overwrite=args.overwrite, delete=args.delete, sparse=args.sparse)
    repo = open_repository(gopts)
    started = time.monotonic()
    items = _ItemReport(out, gopts.verbose, started)
    try:
        outcome = restore(repo, request, lock_wait=gopts.retry_lock,
                          on_selected=lambda sn: out.line(
                              f"restoring snapshot {sn.short_id} of {sn.paths} at {sn.time} "
                              f"to {args.target}"),
                          on_item=items)
    finally:
        items.close()
    elapsed = time.monotonic() - started
    _report_skipped(outcome, out)
    if out.json_mode:
        # restic's summary (doc/075_scripting.rst), then our own fields.
        summary: dict[str, Any] = {
            "message_type": "summary", "seconds_elapsed": int(elapsed),
            "total_files": outcome.total_files, "files_restored": outcome.files_restored,
            "files_skipped": outcome.files_skipped, "files_deleted": outcome.files_deleted,
            "total_bytes": outcome.total_bytes, "bytes_restored": outcome.bytes,
            "bytes_skipped": outcome.bytes_skipped, "snapshot_id": outcome.snapshot_id,
            "dirs_restored": outcome.dirs, "total_errors": len(outcome.errors),
            "total_duration": elapsed, "dry_run": args.dry_run}
        if args.verify:
            summary["files_verified"] = outcome.verified
        out.json(summary)
    else:
        out.line(_summary_line(outcome, elapsed))
        out.line(f"restored {outcome.files} files, {outcome.dirs} dirs, {outcome.others} "
                 f"others, {human_size(outcome.bytes)} in {elapsed:.2f}s"
                 + (" (dry run: nothing was written)" if args.dry_run else ""))
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


def _summary_line(o: RestoreOutcome, elapsed: float) -> str:
    """restic's text summary of a restore (ui/restore/text.go Finish)."""
    took = duration(elapsed)
    if o.files_restored == o.total_files and o.bytes == o.total_bytes:
        line = (f"Summary: Restored {o.total_files} files/dirs ({human_size(o.total_bytes)}) "
                f"in {took}")
    else:
        line = (f"Summary: Restored {o.files_restored} / {o.total_files} files/dirs "
                f"({human_size(o.bytes)} / {human_size(o.total_bytes)}) in {took}")
    return line + _skipped_deleted(o.files_skipped, o.bytes_skipped, o.files_deleted)


def _skipped_deleted(skipped: int, bytes_skipped: int, deleted: int) -> str:
    """The end of restic's restore lines: what was skipped and deleted, if anything."""
    text = f", skipped {skipped} files/dirs {human_size(bytes_skipped)}" if skipped else ""
    return text + (f", deleted {deleted} files/dirs" if deleted else "")


class _ItemReport:
    """Show each restored, updated, unchanged or deleted item as restic does with -vv (text
    lines, or verbose_status JSON lines), and with --json a restic status line at most once
    a second (called from the restore's worker threads)."""

    def __init__(self, out: Printer, verbose: int, started: float) -> None:
        self.out = out
        self.each = verbose >= 2 and not out.quiet  # restic's --verbose=2 (-vv)
        self.started = started
        self.last = started
        self.lock = threading.Lock()
        # restic's status line on a terminal (stderr), redrawn at most 10 times a second.
        self.terminal = not (out.json_mode or out.quiet) and sys.stderr.isatty()
        self.interval = 1.0 / progress_fps(10.0)
        self.drawn = started - self.interval

    def close(self) -> None:
        """Clear the terminal status line."""
        if self.terminal:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def __call__(self, action: str, path: str, size: int, stats: RestoreStats) -> None:
        with self.lock:
            if self.each:
                if self.out.json_mode:
                    self.out.json({"message_type": "verbose_status", "action": action,
                                   "item": path, "size": max(size, 0)})
                elif size == NO_SIZE:
                    sys.stdout.write(f"{action:<9} {path}\n")
                else:
                    sys.stdout.write(f"{action:<9} {path} with size {human_size(size)}\n")
            now = time.monotonic()
            if self.out.json_mode and now - self.last >= 1.0:
                self.last = now
                self.out.json(_status(stats, now - self.started))
            if self.terminal and now - self.drawn >= self.interval:
                self.drawn = now
                sys.stderr.write("\r\x1b[2K" + status_line(stats, now - self.started))
                sys.stderr.flush()


def status_line(stats: RestoreStats, elapsed: float) -> str:
    """restic's restore status line (ui/restore/text.go): elapsed, percent of the bytes,
    files/dirs and bytes done, the totals, what was skipped and deleted."""
    percent = 100 * stats.bytes / stats.total_bytes if stats.total_bytes else 0.0
    line = (f"[{duration(elapsed)}] {percent:.2f}%  {stats.restored} files/dirs "
            f"{human_size(stats.bytes)}, total {stats.total} files/dirs "
            f"{human_size(stats.total_bytes)}")
    return line + _skipped_deleted(stats.skipped, stats.bytes_skipped, stats.deleted)


def _status(stats: RestoreStats, elapsed: float) -> dict[str, Any]:
    """restic's restore status message (doc/075_scripting.rst)."""
    return {"message_type": "status", "seconds_elapsed": int(elapsed),
            "percent_done": stats.bytes / stats.total_bytes if stats.total_bytes else 0.0,
            "total_files": stats.total, "files_restored": stats.restored,
            "files_skipped": stats.skipped, "files_deleted": stats.deleted,
            "total_bytes": stats.total_bytes, "bytes_restored": stats.bytes,
            "bytes_skipped": stats.bytes_skipped}
