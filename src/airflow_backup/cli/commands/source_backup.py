"""``backup URL``: back up a data source (database, table, bucket prefix, Airflow metadata).

``backup`` dispatches here when its arguments are source URLs; plain paths stay file backups.
"""

from __future__ import annotations

import argparse
import time

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.errors import ConfigError
from airflow_backup.sources.registry import is_source_url

__all__ = ["run", "wants"]


def wants(args: argparse.Namespace) -> bool:
    """Return whether the ``backup`` arguments name data sources rather than paths.

    Raise ConfigError if source URLs and paths are mixed, or combined with --stdin.
    """
    urls = [p for p in args.paths if is_source_url(p)]
    if not urls:
        return False
    if len(urls) != len(args.paths) or args.stdin or args.stdin_from_command:
        raise ConfigError("back up a data source URL on its own, without paths or --stdin")
    return True


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Back up each source URL into its own snapshot; print a summary per snapshot."""
    from airflow_backup.cli.commands.backup import parse_time

    # The data-source machinery loads only when a source is backed up (16 ms otherwise).
    from airflow_backup.sources.actions import backup_source

    tags = [t for group in args.tag for t in group.split(",") if t]
    when = parse_time(args.time) if args.time else None
    repo = open_repository(gopts)
    for url in args.paths:
        started = time.monotonic()
        with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
            result = backup_source(repo, url, tags=tags, hostname=args.host or None, time=when)
        s, sn, src = result.stats, result.snapshot, result.metadata["source"]
        elapsed = time.monotonic() - started
        if out.json_mode:
            out.json({"message_type": "summary", "snapshot_id": sn.id, "source": src["url"],
                      "kind": src["kind"], "files_new": s.files_new,
                      "files_unmodified": s.files_unmodified, "data_added": s.data_added,
                      "data_added_packed": s.data_added_packed,
                      "total_bytes_processed": s.total_bytes_processed,
                      "tables": len(src.get("tables") or {}), "total_duration": elapsed})
            continue
        out.line(f"source: {src['url']} ({src['kind']})")
        facts = result.metadata.get("export") or {}
        if "rows" in facts:
            counted = f"{facts['rows']} new row(s) past the last watermark"
        elif "downloaded" in facts:
            counted = (f"{facts['downloaded']} object(s) downloaded, {facts['reused']} "
                       "unchanged since the last backup")
        else:
            counted = f"{len(src.get('tables') or {})} table(s) counted"
        out.line(f"exported {s.total_files_processed} file(s), "
                 f"{human_size(s.total_bytes_processed)}; {counted}")
        out.line(f"Added to the repository: {human_size(s.data_added)} "
                 f"({human_size(s.data_added_packed)} stored) in {elapsed:.2f}s")
        out.result(f"snapshot {sn.short_id} saved")
    return 0
