"""``pg``: PostgreSQL point-in-time recovery (engine: :mod:`airflow_backup.pitr`).

- ``pg archive-wal %p``: the ``archive_command``; exit 0 only once the file is stored, also
  when the same content was archived before; different content under that name is an error.
- ``pg restore-wal %f %p``: the ``restore_command``; exit 1 when the file is not archived
  (the end of WAL, or a ``.history`` probe), exit 126 on any other error after retrying, so
  that recovery aborts instead of ending early at a WAL file it could not fetch.
- ``pg basebackup --dbname URL``: ``pg_basebackup`` streamed into a snapshot.
- ``pg restore --target-dir DIR [--target-*]``: base backup + recovery configuration.
- ``pg list``: the base backups and the archived WAL, as the catalogue sees them.
- ``pg check``: is every base backup's WAL archived, are there gaps, what window of time can
  be recovered (exit 1 when something breaks recoverability).
- ``pg forget --keep-base N``: WAL-aware retention (base backups and the WAL they need).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_backup.cli.commands.prune import (
    add_prune_args,
    options_from_args,
    progress_printer,
    render_prune,
)
from airflow_backup.cli.context import GlobalOptions, open_repository, repository_url
from airflow_backup.cli.output import Printer
from airflow_backup.cli.wal_receipt import archived_json, archived_text
from airflow_backup.errors import BackupError, ConfigError, WalMissing, first_line
from airflow_backup.pitr.catalog import PitrCatalog
from airflow_backup.pitr.spool import (
    ArchiveSpool,
    PrefetchSpool,
    prefetch_directory,
    spool_directory,
)
from airflow_backup.pitr.wal import (
    ArchivedWal,
    archive_wal,
    archive_wal_ahead,
    fetch_wal,
    fetch_wal_ahead,
)
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.cache import resolve_cache_root

__all__ = ["register", "restore_command", "run"]

#: restore_command's exit status for a real failure: above 125, PostgreSQL aborts recovery
#: (exit 1 would mean "no such file": recovery would end there and promote).
EXIT_ABORT_RECOVERY = 126
#: How many ready WAL files ``archive-wal`` stores ahead by default (docs/pitr.md has the
#: measurements behind it).
DEFAULT_AHEAD = 8
_FETCH_ATTEMPTS = 3


def register(sub: Any) -> None:
    """Add the ``pg`` parser and its sub-commands."""
    p = sub.add_parser("pg", help="PostgreSQL point-in-time recovery (WAL archive, base "
                                  "backups, restore to a time/LSN/xid/restore point)")
    verbs = p.add_subparsers(dest="pg_command", metavar="PG_COMMAND", required=True)
    a = verbs.add_parser("archive-wal", help="archive_command: store one WAL file (%%p)")
    a.add_argument("path", help="the WAL file to archive (%%p)")
    a.add_argument("--ahead", type=_count, default=DEFAULT_AHEAD, metavar="N",
                   help="also store up to N more files the server has marked ready, so "
                        "that its next calls return at once (default: %(default)s; 0: only "
                        "%%p; needs the cache directory)")
    a.set_defaults(func=_archive_wal)
    r = verbs.add_parser("restore-wal", help="restore_command: fetch WAL file %%f into %%p")
    r.add_argument("name", help="the WAL file name (%%f)")
    r.add_argument("dest", help="where to write it (%%p)")
    r.add_argument("--prefetch", type=_count, default=DEFAULT_AHEAD, metavar="N",
                   help="also fetch the next N archived segments of its timeline into the "
                        "cache, so that recovery's next calls find them locally (default: "
                        "%(default)s; 0: only %%f; needs the cache directory)")
    r.set_defaults(func=_restore_wal)
    b = verbs.add_parser("basebackup", help="take a base backup with pg_basebackup")
    b.add_argument("--dbname", "-d", required=True, metavar="URL",
                   help="the server, postgresql://user@host:port (password from "
                        "AIRFLOW_BACKUP_SOURCE_PASSWORD(_FILE), PGPASSWORD or ~/.pgpass)")
    b.add_argument("--label", default="airflow-backup", help="backup label")
    b.add_argument("--tag", action="append", default=[], help="extra snapshot tag")
    b.add_argument("--host", default=None, help="hostname recorded in the snapshot")
    b.add_argument("--spread-checkpoint", action="store_true",
                   help="let the server spread the starting checkpoint (default: fast)")
    b.set_defaults(func=_basebackup)
    s = verbs.add_parser("restore", help="restore a base backup and configure recovery")
    s.add_argument("--target-dir", required=True, metavar="DIR",
                   help="new or empty directory for the data directory")
    group = s.add_mutually_exclusive_group()
    group.add_argument("--target-time", metavar="TIME",
                       help="recover to this time (e.g. '2025-01-31 12:00:00+00')")
    group.add_argument("--target-lsn", metavar="LSN", help="recover to this LSN (X/Y)")
    group.add_argument("--target-xid", metavar="XID", help="recover to this transaction id")
    group.add_argument("--target-name", metavar="NAME",
                       help="recover to this pg_create_restore_point() name")
    group.add_argument("--target-immediate", action="store_true",
                       help="stop as soon as the base backup is consistent")
    s.add_argument("--target-action", choices=("pause", "promote", "shutdown"),
                   default="pause", help="what the server does at the target (default: "
                                         "pause, as PostgreSQL)")
    s.add_argument("--target-timeline", default="latest",
                   help="recovery_target_timeline: latest (default: the highest timeline "
                        "with an archived .history file), current, or a timeline id; the "
                        "base backup is chosen among those that can reach it")
    s.add_argument("--target-exclusive", action="store_true",
                   help="stop just before the target instead of just after it")
    s.add_argument("--backup", default="", metavar="ID",
                   help="base backup snapshot to use (default: the newest that ended "
                        "before the target)")
    s.add_argument("--wal-password-file", default="", metavar="FILE",
                   help="password file for the server's restore_command (default: the "
                        "password source of this command; never the password itself)")
    s.set_defaults(func=_restore)
    ls = verbs.add_parser("list", help="list base backups and archived WAL")
    ls.set_defaults(func=_list)
    c = verbs.add_parser("check", help="check the WAL archive: every base backup's WAL, "
                                       "gaps per timeline, the recoverable window")
    c.add_argument("--wal-segsize", default="", metavar="SIZE",
                   help="WAL segment size in MiB (initdb --wal-segsize) when the base "
                        "backups do not record it (default 16)")
    c.set_defaults(func=_check)
    fg = verbs.add_parser("forget", help="WAL-aware retention: keep the newest base backups "
                                         "and the WAL they need, forget the rest")
    fg.add_argument("--keep-base", type=int, default=0, metavar="N",
                    help="keep the newest N base backups")
    fg.add_argument("--keep-within", default="", metavar="DURATION",
                    help="also keep base backups newer than DURATION before the newest "
                         "(restic's syntax: 14d, 1m, 36h)")
    fg.add_argument("--wal-segsize", default="", metavar="SIZE",
                    help="WAL segment size in MiB when the base backups do not record it "
                         "(default 16)")
    fg.add_argument("-n", "--dry-run", action="store_true",
                    help="only print what would be forgotten")
    fg.add_argument("--prune", action="store_true",
                    help="run prune afterwards if snapshots were forgotten")
    add_prune_args(fg)
    fg.set_defaults(func=_forget)
    # Global options go before the PG_COMMAND: ``airflow-backup -r REPO pg archive-wal %p``.
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Dispatch to the ``pg`` sub-command (argparse sets ``func`` to it)."""
    raise ConfigError("missing pg sub-command")  # unreachable: the sub-command is required


def _catalog(repo: Repository, gopts: GlobalOptions) -> PitrCatalog:
    root = None if gopts.no_cache else resolve_cache_root(gopts.cache_dir or None)
    return PitrCatalog(repo, root)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return value


def _local_dir(gopts: GlobalOptions, where: Callable[[Path, str], Path]) -> Path | None:
    """Return the repository's spool or prefetch directory (``where``), None with
    --no-cache."""
    if gopts.no_cache:
        return None
    return where(resolve_cache_root(gopts.cache_dir or None), repository_url(gopts))


def _spool(gopts: GlobalOptions) -> ArchiveSpool | None:
    directory = _local_dir(gopts, spool_directory)
    return ArchiveSpool(directory) if directory is not None else None


def _archive_wal(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    started = time.monotonic()
    spool = _spool(gopts)
    receipt = spool.take(args.path) if spool is not None else None
    ahead: list[ArchivedWal] = []
    if receipt is not None:
        done = ArchivedWal(receipt.name, receipt.snapshot_id, receipt.size, already=True,
                           sha256=receipt.sha256)
    else:
        repo = open_repository(gopts)
        with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
            if spool is None or args.ahead == 0:
                done = archive_wal(repo, _catalog(repo, gopts), args.path)
            else:
                run = archive_wal_ahead(repo, _catalog(repo, gopts), args.path, spool,
                                        ahead=args.ahead)
                done, ahead = run.asked, run.ahead
                if run.ahead_stopped:
                    out.warn(f"archiving ahead stopped: {run.ahead_stopped}")
    seconds = time.monotonic() - started
    report_archived(out, done, seconds, ahead=[a.name for a in ahead],
                    from_receipt=receipt is not None)
    return 0


def report_archived(out: Printer, done: ArchivedWal, seconds: float, *,
                    ahead: list[str], from_receipt: bool) -> None:
    """Render what ``pg archive-wal`` did."""
    if out.json_mode:
        out.json(archived_json(done.name, done.snapshot_id, done.size, already=done.already,
                               from_receipt=from_receipt, ahead=ahead, seconds=seconds))
    else:
        out.result(archived_text(done.name, done.snapshot_id, already=done.already,
                                 from_receipt=from_receipt, ahead=ahead, seconds=seconds))


def _prefetch(gopts: GlobalOptions) -> PrefetchSpool | None:
    directory = _local_dir(gopts, prefetch_directory)
    return PrefetchSpool(directory) if directory is not None else None


def _restore_wal(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    prefetch = _prefetch(gopts)
    if prefetch is not None and prefetch.take(args.name, args.dest) is not None:
        out.info(f"{args.name}: prefetched")
        return 0
    delay = 1.0
    for attempt in range(1, _FETCH_ATTEMPTS + 1):
        try:
            repo = open_repository(gopts)
            with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
                catalog = _catalog(repo, gopts)
                if prefetch is None or args.prefetch == 0:
                    fetch_wal(repo, catalog, args.name, args.dest)
                else:
                    fetch_wal_ahead(repo, catalog, args.name, args.dest, prefetch,
                                    ahead=args.prefetch)
            return 0
        except WalMissing as exc:
            out.info(first_line(exc))
            return 1
        except (BackupError, OSError) as exc:
            retry = isinstance(exc, OSError) or exc.retryable
            if retry and attempt < _FETCH_ATTEMPTS:
                time.sleep(delay)
                delay *= 2
                continue
            sys.stderr.write(f"Fatal: {args.name}: {first_line(exc)} (recovery aborted "
                             "rather than ended early)\n")
            return EXIT_ABORT_RECOVERY
    return EXIT_ABORT_RECOVERY  # pragma: no cover - the loop always returns


def _basebackup(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    from airflow_backup.pitr.basebackup import take_base_backup

    repo = open_repository(gopts)
    started = time.monotonic()
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        done = take_base_backup(repo, args.dbname, label=args.label, tags=list(args.tag),
                                hostname=args.host,
                                fast_checkpoint=not args.spread_checkpoint)
    catalog = _catalog(repo, gopts)
    catalog.remember(done.snapshot)
    catalog.save()
    m = done.meta
    if out.json_mode:
        out.json({"message_type": "basebackup", "snapshot_id": done.snapshot.id,
                  "size": done.size, "seconds": round(time.monotonic() - started, 3), **m})
    else:
        out.result(f"base backup {done.snapshot.id[:8]} saved: {done.size} bytes, "
                   f"WAL {m['start_lsn']}..{m['stop_lsn']} on timeline {m['timeline']}, "
                   f"ended {m['stop_time']}")
    return 0


def _self_command() -> list[str]:
    """Return the argv prefix that runs this program again."""
    argv0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if argv0 and os.path.basename(argv0).startswith("airflow-backup") \
            and os.access(argv0, os.X_OK):
        return [argv0]
    return [sys.executable, "-m", "airflow_backup"]


#: The password sources, in the order :func:`~airflow_backup.cli.password.password_source`
#: reads them after --password-file.
_PASSWORD_VARS = ("AIRFLOW_BACKUP_PASSWORD_FILE", "AIRFLOW_BACKUP_PASSWORD",
                  "AIRFLOW_BACKUP_PASSWORD_COMMAND", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD",
                  "RESTIC_PASSWORD_COMMAND")


def restore_command(gopts: GlobalOptions, password_file: str = "") -> tuple[str, str]:
    """Return (the ``restore_command`` for the restored server, a note on where its password
    comes from). The password itself is never in it: a password file is named, a password
    command is passed on, a password from the environment must be in the server's."""
    env = os.environ
    parts = [*_self_command(), "-r", repository_url(gopts)]
    prefix = ""
    pw_file = password_file or gopts.password_file
    var = ""
    if not pw_file:
        given = [v for v in _PASSWORD_VARS
                 if (v in env if v.endswith("PASSWORD") else bool(env.get(v)))]
        if not given:
            raise ConfigError("cannot tell the restored server where the repository "
                              "password comes from: use --wal-password-file FILE")
        var = given[0]
        if var.endswith("_FILE"):
            pw_file = env[var]
    if pw_file:
        parts += ["--password-file", os.path.abspath(pw_file)]
        note = f"the server reads the repository password from {os.path.abspath(pw_file)}"
    elif var.endswith("_COMMAND"):
        prefix = f"{var}={shlex.quote(env[var])} "
        note = f"the server runs {var} for the repository password"
    else:
        note = (f"start the server with {var} in its environment (restore_command reads "
                "the password from there)")
    if gopts.cache_dir:
        parts += ["--cache-dir", os.path.abspath(gopts.cache_dir)]
    parts += ["pg", "restore-wal", "%f", "%p"]
    return prefix + " ".join(p if p in ("%f", "%p") else shlex.quote(p) for p in parts), note


def _target(args: argparse.Namespace) -> tuple[str, str]:
    for kind in ("time", "lsn", "xid", "name"):
        value = getattr(args, f"target_{kind}")
        if value:
            return kind, str(value)
    return ("immediate", "") if args.target_immediate else ("latest", "")


def _restore(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    from airflow_backup.pitr.recovery import RecoveryTarget, restore_base_backup

    kind, value = _target(args)
    target = RecoveryTarget(kind, value, action=args.target_action,
                            timeline=args.target_timeline, inclusive=not args.target_exclusive)
    command, note = restore_command(gopts, args.wal_password_file)
    repo = open_repository(gopts)
    started = time.monotonic()
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        done = restore_base_backup(repo, _catalog(repo, gopts), target, args.target_dir,
                                   command, backup_id=args.backup)
    seconds = time.monotonic() - started
    m = done.backup.meta
    if out.json_mode:
        out.json({"message_type": "pg_restore", "snapshot_id": done.backup.snapshot_id,
                  "target_dir": str(done.target_dir), "size": done.size,
                  "seconds": round(seconds, 3), "settings": list(done.settings),
                  "password_note": note})
    else:
        out.line(f"base backup {done.backup.snapshot_id[:8]} (WAL {m.get('start_lsn')}.."
                 f"{m.get('stop_lsn')}, ended {m.get('stop_time')}); postgresql.auto.conf:")
        for line in done.settings:
            out.line(f"  {line}")
        out.line(f"note: {note}")
        out.result(f"restored {done.size} bytes into {done.target_dir} in {seconds:.1f}s; "
                   "start the server on it to recover (recovery.signal written)")
    return 0


def _list(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    repo = open_repository(gopts)
    catalog = _catalog(repo, gopts)
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        catalog.refresh()
    bases = catalog.entries("basebackup")
    wal = catalog.entries("wal")
    if out.json_mode:
        out.json({"message_type": "pitr_catalog",
                  "base_backups": [{"snapshot_id": b.snapshot_id, **b.meta} for b in bases],
                  "wal": [{"snapshot_id": w.snapshot_id, **w.meta} for w in wal]})
        return 0
    out.table(["ID", "Stop time", "Start LSN", "Stop LSN", "TLI", "Label"],
              [[b.snapshot_id[:8], str(b.meta.get("stop_time", "")),
                str(b.meta.get("start_lsn", "")), str(b.meta.get("stop_lsn", "")),
                str(b.meta.get("timeline", "")), str(b.meta.get("label", ""))] for b in bases])
    names = sorted(w.name for w in wal)
    span = f": {names[0]} .. {names[-1]}" if names else ""
    out.result(f"{len(bases)} base backup(s), {len(names)} archived WAL file(s){span}")
    return 0


def _segment_size(text: str) -> int | None:
    from airflow_backup.pitr.gaps import parse_segment_size

    return parse_segment_size(text) if text else None


def _check(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """``pg check``: print the archive report; raise WalGap (exit 1) when something breaks
    recoverability, after printing everything found."""
    from airflow_backup.cli.output import human_size
    from airflow_backup.errors import WalGap
    from airflow_backup.pitr.gaps import check_archive

    size = _segment_size(args.wal_segsize)
    repo = open_repository(gopts)
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        report = check_archive(repo, _catalog(repo, gopts), segment_size=size)
    problems = report.problems()
    if out.json_mode:
        out.json({"message_type": "pg_check", **report.to_json()})
    else:
        for warning in report.warnings:
            out.warn(f"warning: {warning}")
        out.line(f"WAL segment size {human_size(report.segment_size)} "
                 f"({report.segment_size_source})")
        if report.backups:
            out.table(["Base backup", "TLI", "First WAL", "Last WAL", "Stop time",
                       "Restorable"],
                      [[b.snapshot_id[:8], str(b.timeline), b.first_wal, b.last_wal,
                        b.stop_time, "yes" if b.restorable else "NO"]
                       for b in report.backups])
        if report.timelines:
            out.table(["TLI", "Parent", "Begins at", "Checked from", "Newest", "Segments"],
                      [[str(t.timeline), str(t.parent or "-"), t.begins_at or "-",
                        t.checked_from or "-", t.newest, str(t.segments)]
                       for t in report.timelines])
        for problem in problems:
            out.result(f"problem: {problem}")
        if report.earliest and report.latest:
            out.result(f"recoverable window: {report.earliest} .. {report.latest} "
                       f"(timeline {report.latest_timeline}, through "
                       f"{report.latest_segment})"
                       + (" with the gaps above" if report.gaps else ""))
        else:
            out.result("recoverable window: none")
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise WalGap(f"WAL archive check failed: {problems[0]}{more}")
    if not out.json_mode:
        out.result(f"WAL archive ok: {len(report.backups)} base backup(s) restorable, no "
                   "gaps")
    return 0


def _forget(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """``pg forget``: WAL-aware retention through the retention operation."""
    from airflow_backup.operations.pitr_retention import forget_pitr
    from airflow_backup.pitr.retention import PitrRetentionPolicy
    from airflow_backup.repository.forget import parse_duration

    policy = PitrRetentionPolicy(keep_base=args.keep_base,
                                 keep_within=parse_duration(args.keep_within))
    size = _segment_size(args.wal_segsize)
    prune_options = options_from_args(args)
    repo = open_repository(gopts)
    out.line(f"Applying policy: {policy.describe()}")
    done = forget_pitr(repo, _catalog(repo, gopts), policy, segment_size=size,
                       dry_run=args.dry_run, prune=args.prune, prune_options=prune_options,
                       lock_wait=gopts.retry_lock, progress=progress_printer(out))
    plan = done.plan
    if not out.json_mode:
        forgotten = {b.snapshot_id for b in plan.forget_bases}
        out.table(["Base backup", "Stop time", "Start LSN", "TLI", "Action"],
                  [[b.snapshot_id[:8], str(b.meta.get("stop_time", "")),
                    str(b.meta.get("start_lsn", "")), str(b.meta.get("timeline", "")),
                    "forget" if b.snapshot_id in forgotten else "keep"]
                   for b in sorted((*plan.keep_bases, *plan.forget_bases),
                                   key=lambda e: e.time)])
        for tli, name in sorted(plan.floors.items()):
            out.line(f"timeline {tli}: WAL kept from {name} on")
        names = sorted(e.name for e in plan.forget_wal)
        span = f" ({names[0]} .. {names[-1]})" if names else ""
        verb = "would forget" if args.dry_run else "forgot"
        out.result(f"{verb} {len(plan.forget_bases)} base backup(s) and {len(names)} WAL "
                   f"file(s){span}; kept {len(plan.keep_bases)} base backup(s) and "
                   f"{len(plan.keep_wal)} WAL file(s)")
    if done.outcome is not None and done.outcome.pruned is not None:
        render_prune(done.outcome.pruned, out)
    if out.json_mode:
        out.json({"message_type": "pg_forget", **done.to_json()})
    return 0
