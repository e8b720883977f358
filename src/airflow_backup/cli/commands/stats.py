"""``stats``: restore size, unique raw data, stored size, dedup and compression ratios."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import IntegrityError
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.stats import compute_stats

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``stats`` parser."""
    p = sub.add_parser("stats", help="show sizes, deduplication and compression")
    p.add_argument("ids", nargs="*", help="only these snapshots (default: all matching)")
    add_filter_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Compute and print the statistics of the selected snapshots."""
    repo = open_repository(gopts)
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        snaps = select_snapshots(repo, filter_from_args(args), list(args.ids) or None)
        for sn in snaps:
            if sn.damaged:  # a damaged file named by id: nothing to count, say why
                raise IntegrityError(f"snapshots/{sn.id}: {sn.damaged}")
        st = compute_stats(repo, snaps)
    if out.json_mode:
        out.json(st.to_json())
        return 0
    out.result(f"Snapshots processed:   {st.snapshots}")
    out.result(f"Total file count:      {st.files}")
    out.result(f"Restore size:          {human_size(st.restore_size)}")
    out.result(f"Unique blobs:          {st.blobs}")
    out.result(f"Raw data size:         {human_size(st.raw_size)}")
    out.result(f"Stored size:           {human_size(st.stored_size)}")
    out.result(f"Deduplication ratio:   {st.dedup_ratio:.2f}x")
    out.result(f"Compression ratio:     {st.compression_ratio:.2f}x")
    return 0
