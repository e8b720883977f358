"""``dump``: write one file of a snapshot to standard output."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from airflow_backup.cli.commands.common import add_as_of_arg, add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.repository.select import resolve_snapshot
from airflow_backup.restorer.dump import dump_file


def register(sub: Any) -> None:
    """Add the ``dump`` parser."""
    p = sub.add_parser("dump", help="print a file from a snapshot to stdout")
    p.add_argument("snapshot", nargs="?", default="",
                   help="snapshot id prefix or 'latest' (may be omitted with --as-of)")
    p.add_argument("file", help="path of the file inside the snapshot")
    add_filter_args(p)
    add_as_of_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Stream the file's verified content to stdout."""
    repo = open_repository(gopts)
    sn = resolve_snapshot(repo, args.snapshot, filter_from_args(args), args.as_of)
    dump_file(repo, sn, args.file, sys.stdout.buffer)
    return 0
