"""``unlock``: remove stale locks (left by a crashed or killed process)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import NotFound
from airflow_backup.repository.locks import is_stale, list_locks
from airflow_backup.storage.base import FileType, Handle

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``unlock`` parser."""
    p = sub.add_parser("unlock", help="remove stale locks")
    p.add_argument("--remove-all", action="store_true",
                   help="remove every lock, stale or not (only when no other process runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Remove stale locks (or all with --remove-all) and report how many."""
    repo = open_repository(gopts)
    removed = 0
    for lock in list_locks(repo.storage, repo.key):
        if args.remove_all or is_stale(lock):
            with contextlib.suppress(NotFound):
                repo.storage.remove(Handle(FileType.LOCK, lock.id))
                removed += 1
    if out.json_mode:
        out.json({"message_type": "unlock", "removed": removed})
    else:
        out.result(f"removed {removed} {'lock' if removed == 1 else 'locks'}")
    return 0
