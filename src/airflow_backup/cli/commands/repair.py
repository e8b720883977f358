"""``repair index`` (rebuild the index from the packs) and ``repair snapshots`` (rewrite
snapshots whose data is missing), with restic's semantics. Both take an exclusive lock."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError
from airflow_backup.repository.repair import repair_index, repair_snapshots
from airflow_backup.repository.select import select_snapshots

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``repair`` parser: ``repair index`` or ``repair snapshots``."""
    p = sub.add_parser("repair", help="repair the index or damaged snapshots",
                       description="'repair index' rebuilds the index from the pack files; "
                       "'repair snapshots' rewrites snapshots whose data is missing.")
    p.add_argument("what", choices=["index", "snapshots"], help="what to repair")
    ids = p.add_argument("ids", nargs="+", default=[], metavar="ID",
                         help="snapshots: only these (default: all); a damaged snapshot "
                              "file is removed by naming it with --forget")
    # nargs="+" but optional: argparse then takes the ids wherever they stand, also after an
    # option ("repair snapshots --forget ID"); with "*" it would match none right after
    # "snapshots" and refuse later ones.
    ids.required = False
    p.add_argument("--read-all-packs", action="store_true",
                   help="index: read whole packs, verify every blob, and copy the intact "
                        "blobs of damaged packs into new packs")
    p.add_argument("--forget", action="store_true",
                   help="snapshots: remove each original after saving its repaired copy")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="snapshots: only report what would change")
    add_filter_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Run the chosen repair and report it."""
    if args.what == "index" and (args.ids or args.forget or args.dry_run):
        raise ConfigError("repair index takes no snapshot ids, --forget or --dry-run")
    if args.what == "snapshots" and args.read_all_packs:
        raise ConfigError("--read-all-packs belongs to 'repair index'")
    repo = open_repository(gopts)
    exclusive = not (args.what == "snapshots" and args.dry_run)
    with repo.lock(exclusive=exclusive, retry_seconds=gopts.retry_lock):
        if args.what == "index":
            ri = repair_index(repo, read_all_packs=args.read_all_packs)
            for name, why in sorted(ri.unreadable.items()):
                out.warn(f"pack {name}: {why}; not indexed (prune will delete it)")
            if out.json_mode:
                out.json({"message_type": "repair_index", "packs_indexed": ri.packs_indexed,
                          "unreadable_packs": ri.unreadable, "salvaged_blobs": ri.salvaged_blobs,
                          "lost_blobs": ri.lost_blobs,
                          "index_files_written": ri.index_files_written,
                          "index_files_removed": ri.index_files_removed})
            else:
                out.result(f"indexed {ri.packs_indexed} packs in {ri.index_files_written} index "
                           f"files, removed {ri.index_files_removed} old index files"
                           + (f"; salvaged {ri.salvaged_blobs} blobs, lost {ri.lost_blobs}"
                              if ri.salvaged_blobs or ri.lost_blobs else ""))
            return 0
        snaps = select_snapshots(repo, filter_from_args(args), list(args.ids) or None)
        results = repair_snapshots(repo, snaps, forget=args.forget, dry_run=args.dry_run)
    changed = [r for r in results if r.status != "unchanged"]
    if out.json_mode:
        out.json([{"snapshot": r.snapshot.id, "status": r.status, "new_id": r.new_id,
                   "lost": [{"path": p, "what": w} for p, w in r.lost]} for r in changed])
        return 0
    for r in changed:
        if r.snapshot.damaged:
            out.line(r.snapshot.damaged)  # names the file and what is wrong with it
            verb = ("cannot be repaired; name it with --forget to remove it"
                    if r.status == "damaged" else "would remove" if args.dry_run
                    else "removed (snapshot file damaged)")
            out.line(f"  {verb}")
            continue
        out.line(f"snapshot {r.snapshot.short_id} of {r.snapshot.paths} at {r.snapshot.time}:")
        for path, what in r.lost:
            out.line(f"  {path}: {what}")
        verb = {"removed": "would remove" if args.dry_run else "removed (root unreadable)",
                "repaired": "would save a repaired copy" if args.dry_run
                else f"saved repaired copy {r.new_id[:8]}"}[r.status]
        out.line(f"  {verb}")
    out.result(f"{len(changed)} of {len(results)} snapshots "
               f"{'need' if args.dry_run else 'were'} repaired")
    return 0
