"""``restore SNAPSHOT --target URL``: restore a data-source snapshot into a database, table,
bucket prefix or Airflow home, then compare row counts and checksums with the backup.

``restore`` dispatches here when ``--target`` is a source URL; a directory stays a file restore.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from airflow_backup.cli.commands.common import filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import resolve_snapshot
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.sources.registry import is_source_url

__all__ = ["add_arguments", "run", "wants"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the data-source restore options to the ``restore`` parser."""
    g = p.add_argument_group("data-source targets (--target URL)")
    g.add_argument("--clean", action="store_true",
                   help="drop existing objects in the target before restoring")
    g.add_argument("--force", action="store_true",
                   help="restore into an existing target / accept another schema revision")
    g.add_argument("--on-existing", choices=("fail", "skip", "overwrite"), default="fail",
                   help="Airflow variables, connections and pools that already exist")
    g.add_argument("--database", default="",
                   help="which database of a multi-database snapshot to restore")


def wants(args: argparse.Namespace) -> bool:
    """Return whether ``--target`` is a data-source URL."""
    return bool(args.target) and is_source_url(args.target)


def _select(repo: Repository, args: argparse.Namespace) -> Snapshot:
    return resolve_snapshot(repo, args.snapshot or None, filter_from_args(args),
                            getattr(args, "as_of", "") or None)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Restore into the target URL and report the per-table comparison."""
    # The data-source machinery loads only when a source is restored (16 ms otherwise).
    from airflow_backup.sources.actions import restore_source
    from airflow_backup.sources.base import SourceRestoreOptions

    if ":" in args.snapshot:
        raise ConfigError("a data-source restore takes a whole snapshot, not ID:SUBPATH")
    repo = open_repository(gopts)
    started = time.monotonic()
    options = SourceRestoreOptions(clean=args.clean, force=args.force,
                                   on_existing=args.on_existing, database=args.database)
    with repo.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        sn = _select(repo, args)
        out.line(f"restoring snapshot {sn.short_id} of {sn.time} into the target")
        report = restore_source(repo, sn, args.target, options)
    elapsed = time.monotonic() - started
    checks: list[dict[str, Any]] = [
        {"table": c.table, "rows": c.rows, "restored_rows": c.restored_rows,
         "checksum_compared": bool(c.checksum), "ok": c.ok} for c in report.checks]
    if out.json_mode:
        out.json({"message_type": "summary", "snapshot_id": sn.id, "target": report.target,
                  "tables": checks, "details": report.details, "total_duration": elapsed})
    else:
        for c in report.checks:
            how = "rows+checksum" if c.checksum else "rows"
            unit = "objects" if c.table == "objects" else "rows"
            out.line(f"  {c.table}: {c.restored_rows} {unit}, {how} match")
        out.result(f"restored snapshot {sn.short_id} into {report.target}: "
                   f"{len(report.checks)} table(s) verified in {elapsed:.2f}s")
    return 0
