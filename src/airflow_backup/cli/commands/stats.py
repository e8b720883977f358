"""``stats``: restore size, unique raw data, stored size, dedup and compression ratios."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.common import add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import IntegrityError
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.stats import MODES, compute_mode_stats, compute_stats

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``stats`` parser."""
    p = sub.add_parser("stats", help="show sizes, deduplication and compression")
    p.add_argument("ids", nargs="*", help="only these snapshots (default: all matching)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="counting mode, as restic's: restore-size (the default), "
                        "files-by-contents, raw-data or blobs-per-file")
    add_filter_args(p)
    p.set_defaults(func=run)


#: Our own figures, printed (in addition to restic's restore-size ones) when no --mode is
#: given; restic's total_blob_count and compression_ratio mean something else and are not.
_OUR_FIGURES = ("restore_size", "data_blob_count", "raw_data_size", "raw_file_data_size",
                "stored_size", "dedup_ratio")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Compute and print the statistics of the selected snapshots: restic's for ``--mode``
    (restore-size when not given, with our own figures added)."""
    repo = open_repository(gopts)
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        snaps = select_snapshots(repo, filter_from_args(args), list(args.ids) or None)
        for sn in snaps:
            if sn.damaged:  # a damaged file named by id: nothing to count, say why
                raise IntegrityError(f"snapshots/{sn.id}: {sn.damaged}")
        mode = compute_mode_stats(repo, snaps, args.mode or "restore-size")
        st = compute_stats(repo, snaps) if args.mode is None else None
    if out.json_mode:
        obj = mode.to_json()
        if st is not None:
            ours = st.to_json()
            obj.update({key: ours[key] for key in _OUR_FIGURES})
        out.json(obj)
        return 0
    if st is None:
        out.result(f"Stats in {mode.mode} mode:")
        out.result(f"     Snapshots processed:  {mode.snapshots}")
        if mode.total_blob_count:
            out.result(f"        Total Blob Count:  {mode.total_blob_count}")
        if mode.total_file_count:
            out.result(f"        Total File Count:  {mode.total_file_count}")
        if mode.total_uncompressed_size:
            out.result(f" Total Uncompressed Size:  {human_size(mode.total_uncompressed_size)}")
        out.result(f"              Total Size:  {human_size(mode.total_size)}")
        if mode.compression_progress:
            out.result(f"    Compression Progress:  {mode.compression_progress:.2f}%")
        if mode.compression_ratio:
            out.result(f"       Compression Ratio:  {mode.compression_ratio:.2f}x")
        if mode.compression_space_saving:
            out.result(f"Compression Space Saving:  {mode.compression_space_saving:.2f}%")
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
