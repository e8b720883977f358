"""``prune``: delete unreferenced data and repack mostly-unused packs (exclusive lock)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.cli.progress import PhaseProgress
from airflow_backup.operations.retention import PruneOutcome, prune
from airflow_backup.repository.prune import PruneOptions, PruneStats, parse_size, unused_limit

__all__ = ["add_prune_args", "options_from_args", "progress_printer", "register",
           "render_prune", "run"]


def add_prune_args(p: argparse.ArgumentParser) -> None:
    """Add the options prune shares with ``forget --prune``."""
    p.add_argument("--max-unused", default="5%", metavar="LIMIT",
                   help="tolerate this much unused data: a percentage, a size (k/m/g/t) or "
                        "'unlimited' (default 5%%)")
    p.add_argument("--max-repack-size", default="", metavar="SIZE",
                   help="repack at most SIZE bytes (k/m/g/t)")
    p.add_argument("--repack-small", action="store_true",
                   help="also repack packs below 80%% of the target pack size")


def options_from_args(args: argparse.Namespace) -> PruneOptions:
    """Build PruneOptions from parsed arguments. Raise ConfigError if a value is invalid."""
    unused_limit(args.max_unused)
    if args.max_repack_size:
        parse_size(args.max_repack_size)
    return PruneOptions(max_unused=args.max_unused, max_repack_size=args.max_repack_size,
                        repack_small=args.repack_small)


def register(sub: Any) -> None:
    """Add the ``prune`` parser."""
    p = sub.add_parser("prune", help="remove data no snapshot references",
                       description="Deletes unreferenced packs and repacks partly used ones. "
                       "Order: new packs, new index, delete old index files, delete old packs; "
                       "an interruption at any point leaves a valid repository.")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="only report what would be deleted and repacked")
    add_prune_args(p)
    p.set_defaults(func=run)


def progress_printer(out: Printer) -> Callable[[str, int, int], None]:
    """Return prune's progress: restic's redrawn line on a terminal; off a terminal a line
    per phase (and every 10 s) with -v."""
    return PhaseProgress(json_mode=out.json_mode, quiet=out.quiet, verbose=bool(out.verbose),
                         quiet_off_terminal=True)


def _restic_summary(st: PruneStats) -> dict[str, object]:
    """restic's documented prune message (restic >= 0.17): a "summary" with nested blob,
    byte and pack file counts, derived as restic derives them."""
    blobs_total = st.used_blobs + st.unused_blobs + st.duplicate_blobs
    blobs_removed = st.remove_blobs + st.repack_freed_blobs
    size_total = st.used_size + st.duplicate_size + st.unused_size + st.unreferenced_size
    size_removed = st.remove_size + st.repack_freed_size + st.unreferenced_size
    return {
        "message_type": "summary",
        "blobs": {"used": st.used_blobs, "duplicate": st.duplicate_blobs,
                  "unused": st.unused_blobs, "total": blobs_total,
                  "repack": st.repack_blobs, "repack_remove": st.repack_freed_blobs,
                  "remove": st.remove_blobs, "remove_total": blobs_removed,
                  "remaining": blobs_total - blobs_removed},
        "bytes": {"used": st.used_size, "duplicate": st.duplicate_size,
                  "unused": st.unused_size, "unreferenced": st.unreferenced_size,
                  "uncompressed": st.uncompressed_size, "total": size_total,
                  "repack": st.repack_size, "repack_remove": st.repack_freed_size,
                  "remove": st.remove_size, "remove_total": size_removed,
                  "remaining": size_total - size_removed,
                  "remaining_unused": st.duplicate_size + st.unused_size - st.remove_size
                  - st.repack_freed_size},
        "packfiles": {"used": st.packs_used, "unused": st.packs_unused,
                      "partly_used": st.packs_partly_used,
                      "unreferenced": st.packs_unreferenced,
                      "total": st.packs_used + st.packs_partly_used + st.packs_unused
                      + st.packs_unreferenced,
                      "keep": st.packs_keep, "repack": st.packs_repack,
                      "remove": st.packs_remove,
                      "remove_total": st.packs_remove + st.packs_unreferenced},
    }


def render_prune(outcome: PruneOutcome, out: Printer) -> None:
    """Print a prune's plan and what it did (restic's lines; with --json restic's
    documented "summary" message, our own figures added)."""
    plan = outcome.plan
    st = plan.stats
    summary: dict[str, object] = {
        **_restic_summary(st),
        "dry_run": outcome.dry_run,
        "used_blobs": st.used_blobs, "used_size": st.used_size,
        "duplicate_blobs": st.duplicate_blobs, "duplicate_size": st.duplicate_size,
        "unused_blobs": st.unused_blobs, "unused_size": st.unused_size,
        "unreferenced_size": st.unreferenced_size,
        "packs_to_keep": st.packs_keep, "packs_to_repack": st.packs_repack,
        "packs_to_delete": st.packs_remove, "unreferenced_packs_to_delete":
            st.packs_unreferenced, "blobs_to_repack": st.repack_blobs,
        "bytes_to_repack": st.repack_size, "bytes_freed": st.freed_size,
        "repack": sorted(p.hex() for p in plan.repack),
        "delete": sorted([p.hex() for p in plan.remove] + list(plan.unreferenced)),
    }
    out.line(f"used:         {st.used_blobs:>10} blobs / {human_size(st.used_size)}")
    if st.duplicate_blobs:
        out.line(f"duplicates:   {st.duplicate_blobs:>10} blobs / "
                 f"{human_size(st.duplicate_size)}")
    out.line(f"unused:       {st.unused_blobs:>10} blobs / {human_size(st.unused_size)}")
    if st.unreferenced_size:
        out.line(f"unreferenced:                    {human_size(st.unreferenced_size)}")
    out.line(f"to repack:    {st.repack_blobs:>10} blobs / {human_size(st.repack_size)} "
             f"in {st.packs_repack} packs")
    out.line(f"to delete:    {st.packs_remove + st.packs_unreferenced:>10} packs")
    out.line(f"total prune:  {human_size(st.freed_size)}")
    result = outcome.result
    if plan.nothing_to_do:
        out.result("nothing to prune")
    elif result is None:
        out.result(f"would free {human_size(st.freed_size)} (dry run: nothing changed)")
    else:
        summary.update(packs_written=result.packs_written,
                       packs_deleted=result.packs_removed,
                       index_files_written=result.index_files_written,
                       index_files_deleted=result.index_files_removed)
        out.result(f"wrote {result.packs_written} packs and {result.index_files_written} "
                   f"index files, deleted {result.index_files_removed} index files and "
                   f"{result.packs_removed} packs, freed {human_size(st.freed_size)} in "
                   f"{outcome.duration:.2f}s")
    for warning in outcome.warnings:
        out.warn(f"Warning: {warning}")
    summary["temporaries_removed"] = list(outcome.temporaries_removed)
    if out.json_mode:
        out.json(summary)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Prune under an exclusive lock (a non-exclusive one for --dry-run)."""
    options = options_from_args(args)
    repo = open_repository(gopts)
    with repo.lock(exclusive=not args.dry_run, retry_seconds=gopts.retry_lock):
        outcome = prune(repo, options, dry_run=args.dry_run, progress=progress_printer(out))
    render_prune(outcome, out)
    return 0
