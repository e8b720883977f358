"""``list``: print the ids of the repository's files of one type, or its blobs, as
``restic list`` does (``snapshots``, ``index``, ``packs``, ``keys``, ``locks``; ``blobs``
prints ``TYPE ID`` per indexed blob)."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.storage.base import FileType

__all__ = ["register", "run"]

_TYPES = {"snapshots": FileType.SNAPSHOT, "index": FileType.INDEX, "packs": FileType.DATA,
          "keys": FileType.KEY, "locks": FileType.LOCK}


def register(sub: Any) -> None:
    """Add the ``list`` parser."""
    p = sub.add_parser("list", help="list the ids of the repository's files or blobs")
    p.add_argument("type", choices=[*_TYPES, "blobs"],
                   help="snapshots, index, packs, keys, locks, or blobs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print one id (for blobs: type and id) per line, sorted."""
    repo = open_repository(gopts)
    if args.type == "locks":  # listing the locks must not add one
        for info in sorted(repo.storage.list(FileType.LOCK), key=lambda i: i.name):
            print(info.name)
        return 0
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        if args.type == "blobs":
            repo.load_index()
            lines = sorted(f"{e.blob.type.value} {e.blob.id.hex()}"
                           for e in repo.index.entries())
        else:
            lines = sorted(i.name for i in repo.storage.list(_TYPES[args.type]))
    for line in lines:
        print(line)
    return 0
