"""``backup``: save files, directories or a stream into a new snapshot."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from typing import Any, BinaryIO, cast

from airflow_backup.archiver.events import ArchiveEvents, ArchiveStats
from airflow_backup.archiver.exclude import Exclusions
from airflow_backup.archiver.scan import Scanner
from airflow_backup.cli.context import GlobalOptions, remember, repository_spec
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.cli.progress import BackupStatus
from airflow_backup.errors import ConfigError, SourceError
from airflow_backup.operations.backup import (
    BackupOutcome,
    BackupRequest,
    StoredSnapshot,
    StreamInput,
    backup,
)
from airflow_backup.repository.select import parse_as_of
from airflow_backup.sources.registry import is_source_url


def register(sub: Any) -> None:
    """Add the ``backup`` parser."""
    p = sub.add_parser("backup", help="create a new snapshot of files or a stream")
    p.add_argument("paths", nargs="*", help="files and directories to back up "
                   "(with --stdin-from-command: the command and its arguments, after --)")
    p.add_argument("-e", "--exclude", action="append", default=[], metavar="PATTERN",
                   help="exclude paths matching PATTERN (repeatable)")
    p.add_argument("--exclude-file", action="append", default=[], metavar="FILE",
                   help="read exclude patterns from FILE, one per line")
    p.add_argument("--iexclude", action="append", default=[], metavar="PATTERN",
                   help="as --exclude, but ignoring case (repeatable)")
    p.add_argument("--iexclude-file", action="append", default=[], metavar="FILE",
                   help="as --exclude-file, but ignoring case")
    p.add_argument("--exclude-caches", action="store_true",
                   help="leave out the contents of directories holding a valid CACHEDIR.TAG "
                        "(the directory and the tag file are kept)")
    p.add_argument("--exclude-if-present", action="append", default=[],
                   metavar="FILENAME[:HEADER]",
                   help="leave out the contents of directories holding FILENAME (that starts "
                        "with HEADER, if given); the directory and FILENAME are kept "
                        "(repeatable)")
    p.add_argument("--exclude-larger-than", default="", metavar="SIZE",
                   help="leave out files larger than SIZE (bytes, or with a unit: 512K, "
                        "100M, 2G, 1T)")
    p.add_argument("-x", "--one-file-system", action="store_true",
                   help="do not cross file system boundaries (mount points are kept, empty)")
    p.add_argument("--files-from", action="append", default=[], metavar="FILE",
                   help="read the paths to back up from FILE, one per line ('#' comments, "
                        "glob patterns expanded; repeatable)")
    p.add_argument("--files-from-verbatim", action="append", default=[], metavar="FILE",
                   help="read the paths from FILE, one per line, taken literally")
    p.add_argument("--files-from-raw", action="append", default=[], metavar="FILE",
                   help="read the paths from FILE, separated by NUL bytes (find -print0)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG[,TAG]",
                   help="add tags to the snapshot (repeatable)")
    p.add_argument("-H", "--host", default="", help="hostname to record (default: this host)")
    p.add_argument("--time", default="", help="snapshot time instead of now "
                   "('2006-01-02 15:04:05' local, or RFC 3339)")
    p.add_argument("--parent", default="", metavar="SNAPSHOT",
                   help="compare with this snapshot to skip unchanged files (default: the "
                        "latest snapshot of the same host and paths)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="do not write anything: show what would be added")
    p.add_argument("--skip-if-unchanged", action="store_true",
                   help="save no snapshot if nothing changed since the parent snapshot")
    p.add_argument("-f", "--force", action="store_true",
                   help="read every file, even those unchanged since the parent snapshot")
    p.add_argument("--with-atime", action="store_true",
                   help="store access times (by default atime is recorded as mtime)")
    p.add_argument("--stdin", action="store_true", help="read the data from standard input")
    p.add_argument("--stdin-filename", default="stdin", help="file name for --stdin data")
    p.add_argument("--stdin-from-command", action="store_true",
                   help="back up the standard output of the command given after --; "
                        "no snapshot is saved if it exits non-zero")
    p.add_argument("--fallback-repo", action="append", default=[], metavar="URL",
                   help="if the repository fails (storage down, bucket gone, retries used up), "
                        "store the snapshot in this repository instead, marked degraded "
                        "(repeatable, tried in order; password from "
                        "AIRFLOW_BACKUP_FALLBACK_PASSWORD_FILE or the usual sources)")
    p.set_defaults(func=run)


def snapshot_time(text: str) -> datetime:
    """Return a --time value ('YYYY-MM-DD HH:MM:SS' local, or RFC 3339) as a datetime."""
    try:
        return datetime.fromtimestamp(parse_as_of(text) / 1e9).astimezone()
    except ConfigError:
        raise ConfigError(f"invalid --time {text!r}: use 'YYYY-MM-DD HH:MM:SS' (local time) "
                          "or RFC 3339") from None


class _Progress(ArchiveEvents):
    """The backup's events for the CLI: restic's status line on a terminal or status
    messages with --json (totals from a scan ahead of the backup), -v lines otherwise."""

    def __init__(self, out: Printer, request: BackupRequest) -> None:
        self.out = out
        self._last = time.monotonic()
        terminal = not (out.json_mode or out.quiet) and sys.stderr.isatty()
        json_status = out.json_mode and not out.quiet
        self._scanner: Scanner | None = None
        if request.paths and (terminal or json_status):
            self._scanner = Scanner(request.paths, Exclusions.of(request.options()))
            self._scanner.__enter__()
        self._status = (BackupStatus(terminal=terminal, json_mode=json_status,
                                     scanner=self._scanner)
                        if terminal or json_status else None)

    def close(self) -> None:
        if self._status is not None:
            self._status.close()
        if self._scanner is not None:
            self._scanner.__exit__(None, None, None)

    def item_done(self, path: str, kind: str, size: int, stats: ArchiveStats) -> None:
        if self._status is not None:
            self._status.update(stats, path)
        now = time.monotonic()
        if self.out.verbose and not self.out.json_mode and now - self._last >= 1.0:
            self._last = now
            self.out.info(f"[{stats.total_files_processed} files, "
                          f"{human_size(stats.total_bytes_processed)}] {path}")

    def stream_read(self, path: str, done: int) -> None:
        if self._status is not None:
            self._status.update_stream(path, done)

    def warning(self, message: str) -> None:
        self.out.warn(message)  # as restic: the same text on stderr, also with --json

    def item_error(self, path: str, message: str) -> None:
        if self.out.json_mode:
            self.out.json({"message_type": "error", "error": {"message": message},
                           "during": "archival", "item": path})
        else:
            self.out.warn(f"error: {path}: {message}")


_ENV_REF = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_pattern_line(line: str) -> str:
    """Expand ``$VAR`` and ``${VAR}`` from the environment (unset: empty) and ``$$`` to
    ``$`` in a line of an exclude file, as restic does."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        return os.environ.get(m.group(2) or m.group(3) or "", "")

    return _ENV_REF.sub(sub, line)


def _patterns(patterns: list[str], files: list[str]) -> list[str]:
    """Return ``patterns`` and those of the exclude ``files`` (blank lines and ``#``
    comments skipped, ``$VAR`` expanded, as restic reads them)."""
    out = list(patterns)
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                out += [expand_pattern_line(ln.strip()) for ln in f
                        if ln.strip() and not ln.lstrip().startswith("#")]
        except OSError as exc:
            raise ConfigError(f"cannot read exclude file {path}: {exc.strerror}") from None
    return out


def _command_stream(argv: list[str], filename: str) -> StreamInput:
    """The standard output of ``argv`` as a stream; no snapshot if it exits non-zero."""
    if not argv:
        raise ConfigError("--stdin-from-command needs a command after --")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> BinaryIO:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        except OSError as exc:
            raise SourceError(f"cannot start {argv[0]}: {exc.strerror}") from None
        procs.append(proc)
        assert proc.stdout is not None
        return cast(BinaryIO, proc.stdout)

    def check_exit() -> None:
        code = procs[0].wait()
        if code != 0:
            raise SourceError(f"command {argv[0]} exited with status {code}; "
                              "no snapshot saved")

    def close() -> None:
        for proc in procs:
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return StreamInput(filename, start, close, check_exit)


def _read_list(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read file list {path}: {exc.strerror}") from None


def files_from(args: argparse.Namespace) -> list[str]:
    """Return the paths of --files-from (lines; blank lines and '#' comments skipped, glob
    patterns expanded, as restic does), --files-from-verbatim (lines, literal) and
    --files-from-raw (NUL-separated, literal); '-' reads standard input. Raise ConfigError
    if a file cannot be read or a pattern matches nothing."""
    import glob

    paths: list[str] = []
    for path in args.files_from:
        for line in _read_list(path).decode("utf-8", "surrogateescape").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            found = sorted(glob.glob(line)) if glob.has_magic(line) else [line]
            if not found:
                raise ConfigError(f"--files-from {path}: pattern {line!r} matches nothing")
            paths += found
    for path in args.files_from_verbatim:
        paths += [ln for ln in _read_list(path).decode("utf-8", "surrogateescape")
                  .splitlines() if ln]
    for path in args.files_from_raw:
        paths += [p for p in _read_list(path).decode("utf-8", "surrogateescape").split("\0")
                  if p]
    return paths


def _request(args: argparse.Namespace) -> BackupRequest:
    args.paths = [*args.paths, *files_from(args)]
    urls = [p for p in args.paths if is_source_url(p)]
    streamed = args.stdin or args.stdin_from_command
    if urls and (len(urls) != len(args.paths) or streamed):
        raise ConfigError("back up a data source URL on its own, without paths or --stdin")
    if not (streamed or args.paths):
        raise ConfigError("nothing to back up: give at least one path, --stdin or "
                          "--stdin-from-command")
    if streamed and args.fallback_repo:
        raise ConfigError("--fallback-repo needs paths: a stream cannot be read twice")
    stream = None
    if args.stdin_from_command:
        stream = _command_stream(list(args.paths), args.stdin_filename)
    elif args.stdin:
        stream = StreamInput(args.stdin_filename, lambda: sys.stdin.buffer)
    tags = tuple(t for group in args.tag for t in group.split(",") if t)
    return BackupRequest(
        paths=() if streamed or urls else tuple(args.paths), sources=tuple(urls),
        stream=stream, excludes=tuple(_patterns(args.exclude, args.exclude_file)),
        iexcludes=tuple(_patterns(args.iexclude, args.iexclude_file)),
        exclude_caches=args.exclude_caches, exclude_if_present=tuple(args.exclude_if_present),
        exclude_larger_than=args.exclude_larger_than or None,
        one_file_system=args.one_file_system, tags=tags,
        hostname=args.host or None, time=snapshot_time(args.time) if args.time else None,
        parent=args.parent or None, force=args.force, with_atime=args.with_atime,
        skip_if_unchanged=args.skip_if_unchanged, dry_run=args.dry_run)


def _render(out: Printer, outcome: BackupOutcome, fallback: bool) -> None:
    for sn in outcome.snapshots:
        _render_snapshot(out, sn, outcome, fallback)
    for warning in outcome.warnings:
        out.warn(f"Warning: {warning}")


def _render_snapshot(out: Printer, sn: StoredSnapshot, outcome: BackupOutcome,
                     fallback: bool) -> None:
    if out.json_mode:
        body: dict[str, object] = {
            "message_type": "summary", **sn.counters.counters(),
            "total_duration": outcome.duration,
            "errors": sn.errors, "status": outcome.status.value}
        if outcome.dry_run:
            body["dry_run"] = True
        elif sn.id:  # none when --skip-if-unchanged saved none (restic omits it too)
            body["snapshot_id"] = sn.id
        if sn.kind not in ("files", "stream"):
            body.update(source=sn.source, kind=sn.kind, tables=sn.tables)
        if fallback:
            body.update(repository=outcome.location, degraded=bool(outcome.degraded_reasons),
                        degraded_reason="; ".join(outcome.degraded_reasons))
        out.json(body)
        return
    if sn.kind not in ("files", "stream"):
        out.line(f"source: {sn.source} ({sn.kind})")
        facts = sn.export
        if "rows" in facts:
            counted = f"{facts['rows']} new row(s) past the last watermark"
        elif "downloaded" in facts:
            counted = (f"{facts['downloaded']} object(s) downloaded, {facts.get('reused')} "
                       "unchanged since the last backup")
        else:
            counted = f"{sn.tables} table(s) counted"
        out.line(f"exported {sn.files} file(s), {human_size(sn.bytes)}; {counted}")
    else:
        c = sn.counters
        out.line(f"Files:       {c.files_new} new, {c.files_changed} changed, "
                 f"{c.files_unmodified} unmodified")
        out.line(f"Dirs:        {c.dirs_new} new, {c.dirs_changed} changed, "
                 f"{c.dirs_unmodified} unmodified")
    verb = "Would add" if outcome.dry_run else "Added"
    out.line(f"{verb} to the repository: {human_size(sn.added)} "
             f"({human_size(sn.stored)} stored)")
    out.line(f"processed {sn.files} files, {human_size(sn.bytes)} in "
             f"{outcome.duration:.2f}s")
    # As restic: -q prints nothing for a backup that worked (the exit status says it).
    if outcome.dry_run:
        return
    if not sn.id:
        out.line("skipped creating snapshot")
        return
    out.line(f"snapshot {sn.short_id} saved" + (f" to {outcome.location}" if fallback else ""))


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Back up (the backup operation), print a summary per snapshot; exit 3 if some files
    could not be read (partial)."""
    request = _request(args)
    spec = repository_spec(gopts, fallbacks=tuple(args.fallback_repo))
    progress = _Progress(out, request)
    try:
        outcome = backup(spec, request, events=progress,
                         on_open=lambda target, repo: remember(gopts, target, repo))
    finally:
        progress.close()
    _render(out, outcome, bool(args.fallback_repo))
    return outcome.exit_code()
