"""``unlock``: remove stale locks (``--remove-all``: every lock, with a warning)."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.repository.locks import list_locks
from airflow_backup.repository.unlock import remove_locks


def register(sub: Any) -> None:
    """Add the ``unlock`` parser."""
    p = sub.add_parser("unlock", help="remove stale locks (of dead processes, or > 30 min old)")
    p.add_argument("--remove-all", action="store_true",
                   help="remove every lock, including those of processes still running")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Remove locks and report how many."""
    repo = open_repository(gopts)
    if args.remove_all:
        out.warn("Warning: removing ALL locks, including those of running processes; "
                 "a backup or prune still running may be damaged by concurrent maintenance")
    removed = remove_locks(repo, remove_all=args.remove_all)
    kept = [lk for lk in list_locks(repo.storage, repo.key)
            if lk.id not in {r.id for r in removed}]
    if out.json_mode:
        out.json({"message_type": "unlock", "removed": [lk.id for lk in removed],
                  "kept": [lk.id for lk in kept]})
    else:
        for lk in removed:
            out.info(f"removed lock {lk.id[:8]} (PID {lk.pid} on {lk.hostname})")
        out.result(f"successfully removed {len(removed)} lock(s)")
        for lk in kept:
            # Say why each lock stays, and what removes it: no silent "removed 0" loop.
            out.warn(f"kept lock held by {lk.holder()}")
    return 0
