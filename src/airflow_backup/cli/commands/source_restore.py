"""``restore SNAPSHOT --target URL``: restore a data-source snapshot into a database, table,
bucket prefix or Airflow home, then compare row counts and checksums with the backup.

``restore`` dispatches here when ``--target`` is a source URL; a directory stays a file restore.
"""

from __future__ import annotations

import argparse
import time

from airflow_backup.cli.commands.common import filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError
from airflow_backup.operations.outcome import parse_choice, to_json_value
from airflow_backup.operations.restore import OnExisting, RestoreRequest, restore
from airflow_backup.sources.registry import is_source_url

__all__ = ["add_arguments", "run", "wants"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the data-source restore options to the ``restore`` parser."""
    g = p.add_argument_group("data-source targets (--target URL)")
    g.add_argument("--clean", action="store_true",
                   help="drop existing objects in the target before restoring")
    g.add_argument("--force", action="store_true",
                   help="restore into an existing target / accept another schema revision")
    g.add_argument("--on-existing", choices=[m.value for m in OnExisting], default="fail",
                   help="Airflow variables, connections and pools that already exist: fail, "
                        "skip or overwrite them; replace = overwrite and --force")
    g.add_argument("--database", default="",
                   help="which database of a multi-database snapshot to restore")


def wants(args: argparse.Namespace) -> bool:
    """Return whether ``--target`` is a data-source URL."""
    return bool(args.target) and is_source_url(args.target)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Restore into the target URL and report the per-table comparison."""
    if ":" in args.snapshot:
        raise ConfigError("a data-source restore takes a whole snapshot, not ID:SUBPATH")
    request = RestoreRequest(target=args.target, snapshot=args.snapshot,
                             filter=filter_from_args(args),
                             as_of=getattr(args, "as_of", "") or "", clean=args.clean,
                             force=args.force,
                             on_existing=parse_choice(OnExisting, args.on_existing,
                                                      "--on-existing"),
                             database=args.database)
    repo = open_repository(gopts)
    started = time.monotonic()
    outcome = restore(repo, request, lock_wait=gopts.retry_lock,
                      on_selected=lambda sn: out.line(
                          f"restoring snapshot {sn.short_id} of {sn.time} into the target"))
    elapsed = time.monotonic() - started
    if out.json_mode:
        out.json({"message_type": "summary", "snapshot_id": outcome.snapshot_id,
                  "target": outcome.target,
                  "tables": [to_json_value(c) for c in outcome.tables],
                  "details": outcome.details, "total_duration": elapsed})
    else:
        for c in outcome.tables:
            how = "rows+checksum" if c.checksum_compared else "rows"
            unit = "objects" if c.table == "objects" else "rows"
            out.line(f"  {c.table}: {c.restored_rows} {unit}, {how} match")
        notes = outcome.details.get("notes")
        for note in notes if isinstance(notes, list) else []:
            out.line(f"  note: {note}")
        out.result(f"restored snapshot {outcome.short_id} into {outcome.target}: "
                   f"{len(outcome.tables)} table(s) verified in {elapsed:.2f}s")
    return 0
