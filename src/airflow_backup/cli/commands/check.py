"""``check``: verify the repository's structure and, optionally, its data; name the damage
and the snapshots and files it breaks. Exit status 1 if anything is wrong."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.cli.progress import PhaseProgress
from airflow_backup.errors import IntegrityError
from airflow_backup.operations.verify import check
from airflow_backup.repository.check import CheckOptions, CheckReport, parse_subset

__all__ = ["register", "run"]

_SHOWN_PATHS = 10


def register(sub: Any) -> None:
    """Add the ``check`` parser."""
    p = sub.add_parser("check", help="check the repository for errors")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--read-data", action="store_true",
                   help="read every pack and verify every blob (MAC and SHA-256)")
    g.add_argument("--read-data-subset", default="", metavar="SUBSET",
                   help="read part of the packs: 'n/t' (group n of t), 'x%%' or a size "
                        "such as 500M (a random sample)")
    p.set_defaults(func=run)


def _damage_lines(report: CheckReport) -> list[str]:
    lines = []
    for name, reason in sorted(report.damaged_snapshot_files.items()):
        lines.append(f"snapshot file {name} is damaged ({reason}); the snapshot is lost")
    broken = report.broken_by_pack()
    for pack, reason in sorted(report.damaged_packs.items()):
        lines.append(f"pack {pack} ({reason}) breaks:" if pack in broken
                     else f"pack {pack} ({reason}): no snapshot depends on its damaged part")
        for snap, paths in sorted(broken.get(pack, {}).items()):
            more = f" (+{len(paths) - _SHOWN_PATHS} more)" if len(paths) > _SHOWN_PATHS else ""
            lines.append(f"  snapshot {snap[:8]}: {', '.join(paths[:_SHOWN_PATHS])}{more}")
    for snap, items in sorted(report.affected.items()):
        unexplained = [a for a in items if not a.packs]
        for a in unexplained[:_SHOWN_PATHS]:
            lines.append(f"snapshot {snap[:8]}: {a.path}: {a.reason}")
    return lines


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Run the check and print the report; raise IntegrityError (exit 1) on any error."""
    if args.read_data_subset:
        parse_subset(args.read_data_subset)  # fail before asking for a password
    repo = open_repository(gopts)
    options = CheckOptions(read_data=args.read_data, read_data_subset=args.read_data_subset)
    progress = PhaseProgress(json_mode=out.json_mode, quiet=out.quiet)
    outcome = check(repo, options, lock_wait=gopts.retry_lock, progress=progress)
    report = outcome.report
    if out.json_mode:
        out.json(_report_json(report))
    else:
        for hint in report.hints:
            out.line(hint)
        for warning in outcome.warnings:
            out.warn(f"Warning: {warning}")
        for error in report.errors:
            out.warn(f"error: {error}")
        lines = _damage_lines(report)
        if lines:
            out.warn("damage report:")
            for line in lines:
                out.warn("  " + line)
        if report.ok:
            out.result(outcome.summary())
    if not report.ok:
        raise IntegrityError(outcome.summary())
    return 0


def _report_json(report: CheckReport) -> dict[str, Any]:
    """restic's documented check summary (restic >= 0.17; 0.14 printed text only), with our
    own report added."""
    return {
        "message_type": "summary", "num_errors": len(report.errors),
        "broken_packs": sorted(report.damaged_packs),
        # restic: a pack named by several index files -> "repair index"; a pack no index
        # names, or one mixing data and tree blobs -> "prune".
        "suggest_repair_index": any("index files" in h for h in report.hints),
        "suggest_prune": any("not referenced in any index" in h or "mixes data" in h
                             for h in report.hints),
        "ok": report.ok, "errors": report.errors,
        "hints": report.hints, "snapshots": report.snapshots, "packs": report.packs,
        "packs_read": report.packs_read, "damaged_packs": report.damaged_packs,
        "damaged_snapshot_files": report.damaged_snapshot_files,
        "affected": {snap: [{"path": a.path, "reason": a.reason, "packs": list(a.packs)}
                            for a in items] for snap, items in report.affected.items()},
    }
