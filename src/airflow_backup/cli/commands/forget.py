"""``forget``: remove snapshots by id or by a retention policy (restic's flags); ``--prune``
then deletes the data nothing references any more."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import (
    add_filter_args,
    filter_from_args,
    snapshot_json,
    snapshot_rows,
)
from airflow_backup.cli.commands.prune import (
    add_prune_args,
    options_from_args,
    progress_printer,
    render_prune,
)
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.operations.retention import RetentionRequest, retention
from airflow_backup.repository.forget import (
    Duration,
    ExpirePolicy,
    PolicyResult,
    Semantics,
    parse_count,
    parse_duration,
    parse_tag_list,
)
from airflow_backup.repository.groups import parse_group_by

_COUNTS = [("last", "-l"), ("hourly", "-H"), ("daily", "-d"), ("weekly", "-w"),
           ("monthly", "-m"), ("yearly", "-y")]
_WITHIN = ["hourly", "daily", "weekly", "monthly", "yearly"]


def register(sub: Any) -> None:
    """Add the ``forget`` parser."""
    p = sub.add_parser("forget", help="remove snapshots by id or by a retention policy",
                       description="Snapshots are grouped (--group-by), then the --keep-* "
                       "policy is applied to each group. Counts take a number or "
                       "'unlimited'; durations look like 1y6m7d2h.")
    p.add_argument("ids", nargs="*", help="remove exactly these snapshots (id prefixes)")
    for name, short in _COUNTS:
        p.add_argument(short, f"--keep-{name}", default="0", metavar="N",
                       help=f"keep the last N {name} snapshots" if name != "last"
                       else "keep the last N snapshots")
    p.add_argument("--keep-within", default="", metavar="DURATION",
                   help="keep snapshots newer than DURATION before the latest snapshot")
    for name in _WITHIN:
        p.add_argument(f"--keep-within-{name}", default="", metavar="DURATION",
                       help=f"keep {name} snapshots newer than DURATION before the latest")
    p.add_argument("--keep-tag", action="append", default=[], metavar="TAG[,TAG]",
                   help="keep snapshots that have all these tags (repeatable: any list)")
    add_filter_args(p, host_short=False)
    p.add_argument("-g", "--group-by", default="host,paths",
                   help="group snapshots by host, paths and/or tags (default host,paths; "
                        "'' for one group)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="only print what would be removed")
    p.add_argument("--prune", action="store_true",
                   help="run prune afterwards if snapshots were removed")
    p.add_argument("--unsafe-allow-remove-all", action="store_true",
                   help="allow an empty policy to remove every snapshot that matches the "
                        "filters (a filter is required)")
    p.add_argument("--restic-compat", choices=["current", "0.14"], default="current",
                   help="retention rules: 'current' (restic >= 0.16, default) or exactly "
                        "restic 0.14/0.15 (no 'unlimited', oldest snapshot not kept extra)")
    add_prune_args(p)
    p.set_defaults(func=run)


def policy_from_args(args: argparse.Namespace) -> ExpirePolicy:
    """Build the ExpirePolicy from parsed ``forget`` arguments. Raise ConfigError if a value
    is invalid."""
    def count(name: str) -> int:
        return parse_count(getattr(args, f"keep_{name}"))

    def within(name: str) -> Duration:
        return parse_duration(getattr(args, f"keep_within_{name}"))

    return ExpirePolicy(
        last=count("last"), hourly=count("hourly"), daily=count("daily"),
        weekly=count("weekly"), monthly=count("monthly"), yearly=count("yearly"),
        within=parse_duration(args.keep_within), within_hourly=within("hourly"),
        within_daily=within("daily"), within_weekly=within("weekly"),
        within_monthly=within("monthly"), within_yearly=within("yearly"),
        tags=tuple(parse_tag_list(t) for t in args.keep_tag),
    )


def _group_json(key_json: dict[str, Any], result: PolicyResult) -> dict[str, Any]:
    return {
        "tags": key_json["tags"], "host": key_json["hostname"], "paths": key_json["paths"],
        "keep": [snapshot_json(s) for s in result.keep] or None,
        "remove": [snapshot_json(s) for s in result.remove] or None,
        "reasons": [{"snapshot": snapshot_json(r.snapshot), "matches": r.matches,
                     "counters": r.counters} for r in result.reasons] or None,
    }


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Decide, print, remove, and optionally prune (the retention operation)."""
    semantics = Semantics(args.restic_compat)
    policy = policy_from_args(args)
    parse_group_by(args.group_by)
    flt = filter_from_args(args)
    request = RetentionRequest(policy=policy, filter=flt, group_by=args.group_by,
                               semantics=semantics, ids=tuple(args.ids),
                               allow_remove_all=args.unsafe_allow_remove_all,
                               prune=args.prune, prune_options=options_from_args(args),
                               dry_run=args.dry_run)
    repo = open_repository(gopts)
    if not args.ids and not policy.is_empty():
        out.line(f"Applying Policy: {policy.describe()}")
    outcome = retention(repo, request, lock_wait=gopts.retry_lock,
                        progress=progress_printer(out))
    if not args.ids and not outcome.policy_applied:
        out.line("no policy was specified, no snapshots will be removed")
    groups_json = [_group_json(g.key.to_json(), g.result) for g in outcome.groups]
    for g in outcome.groups:
        _print_group(out, g.key.to_json(), g.result, bool(args.group_by))
    if out.json_mode and (groups_json or not args.ids):
        out.json(groups_json)
    if outcome.removed and not args.dry_run:
        out.line(f"removed {len(outcome.removed)} snapshots")
    elif outcome.removed:
        out.line("would have removed the following snapshots:\n" + "\n".join(outcome.removed))
    if outcome.pruned is not None:
        out.line(f"{len(outcome.removed)} snapshots "
                 f"{'would be' if args.dry_run else 'have been'} removed, running prune")
        render_prune(outcome.pruned, out)
    return 0


def _print_group(out: Printer, key: dict[str, Any], result: PolicyResult, grouped: bool) -> None:
    if out.json_mode or out.quiet:
        return
    if grouped:
        parts = []
        if key["hostname"]:
            parts.append(f"host [{key['hostname']}]")
        if key["tags"] is not None:
            parts.append(f"tags [{', '.join(key['tags'])}]")
        if key["paths"] is not None:
            parts.append(f"paths [{', '.join(key['paths'])}]")
        out.line("snapshots for (" + ", ".join(parts) + "):")
    if result.keep:
        out.line(f"keep {len(result.keep)} snapshots:")
        headers, rows = snapshot_rows(result.keep,
                                      {r.snapshot.id: r.matches for r in result.reasons})
        out.table(headers, rows)
        out.line()
    if result.remove:
        out.line(f"remove {len(result.remove)} snapshots:")
        headers, rows = snapshot_rows(result.remove)
        out.table(headers, rows)
        out.line()


__all__ = ["policy_from_args", "register", "run"]
