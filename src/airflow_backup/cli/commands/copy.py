"""``copy``: copy snapshots from another repository into this one, as ``restic copy`` does
(the offsite copy of the 3-2-1 rule). The source is ``--from-repo`` (or
AIRFLOW_BACKUP_FROM_REPOSITORY / RESTIC_FROM_REPOSITORY) with its own password
(``--from-password-file``, or AIRFLOW_BACKUP_FROM_PASSWORD(_FILE) /
RESTIC_FROM_PASSWORD(_FILE)); the destination is ``-r`` with the usual password."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from airflow_backup.cli.commands.common import add_filter_args, filter_from_args
from airflow_backup.cli.context import GlobalOptions, open_repository, repository_spec
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError
from airflow_backup.operations.spec import PasswordKind, PasswordSource
from airflow_backup.operations.spec import open_repository as open_spec
from airflow_backup.repository.copying import copy_snapshots
from airflow_backup.repository.select import select_snapshots
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``copy`` parser."""
    p = sub.add_parser("copy", help="copy snapshots from another repository")
    p.add_argument("ids", nargs="*", help="snapshots to copy (id prefixes or 'latest'); "
                                          "default: all that match the filters")
    p.add_argument("--from-repo", default="", metavar="URL",
                   help="source repository (env AIRFLOW_BACKUP_FROM_REPOSITORY, "
                        "RESTIC_FROM_REPOSITORY)")
    p.add_argument("--from-password-file", default="", metavar="FILE",
                   help="source repository password file (env AIRFLOW_BACKUP_FROM_PASSWORD"
                        "(_FILE), RESTIC_FROM_PASSWORD(_FILE))")
    p.add_argument("--from-key-hint", default="", metavar="KEY",
                   help="source key id to try first")
    add_filter_args(p)
    p.set_defaults(func=run)


def _from_password(args: argparse.Namespace) -> PasswordSource:
    if args.from_password_file:
        return PasswordSource(PasswordKind.FILE, args.from_password_file,
                              label="source repository")
    for prefix in ("AIRFLOW_BACKUP_FROM_PASSWORD", "RESTIC_FROM_PASSWORD"):
        if os.environ.get(prefix):
            return PasswordSource(PasswordKind.ENV, prefix, label="source repository")
        if os.environ.get(prefix + "_FILE"):
            return PasswordSource(PasswordKind.FILE, os.environ[prefix + "_FILE"],
                                  label="source repository")
    raise ConfigError("copy needs the source repository's password: --from-password-file, "
                      "or AIRFLOW_BACKUP_FROM_PASSWORD(_FILE) / RESTIC_FROM_PASSWORD(_FILE)")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Copy under shared locks on both repositories; print each snapshot copied."""
    url = (args.from_repo or os.environ.get("AIRFLOW_BACKUP_FROM_REPOSITORY")
           or os.environ.get("RESTIC_FROM_REPOSITORY") or "")
    if not url:
        raise ConfigError("copy needs the source repository: --from-repo URL (or "
                          "AIRFLOW_BACKUP_FROM_REPOSITORY / RESTIC_FROM_REPOSITORY)")
    src_spec = dataclasses.replace(repository_spec(gopts, url=url), password=_from_password(args),
                                   key_hint=args.from_key_hint, name="source")
    src = open_spec(src_spec)
    dst = open_repository(gopts)

    def copied(sn: Snapshot, new_id: str) -> None:
        if out.json_mode:
            out.json({"message_type": "copied", "source_snapshot_id": sn.id,
                      "snapshot_id": new_id})
        else:
            out.line(f"snapshot {sn.short_id} of {sn.paths} at {sn.time}")
            out.result(f"snapshot {new_id[:8]} saved")

    with src.lock(exclusive=False, retry_seconds=gopts.retry_lock), \
            dst.lock(exclusive=False, retry_seconds=gopts.retry_lock):
        wanted = [s for s in select_snapshots(src, filter_from_args(args), list(args.ids))
                  if not s.damaged]
        result = copy_snapshots(src, dst, wanted, on_copied=copied)
    if out.json_mode:
        out.json({"message_type": "summary", "copied_snapshots": len(result.copied),
                  "skipped_snapshots": len(result.skipped), "blobs_copied": result.blobs,
                  "bytes_copied": result.bytes})
    else:
        for sid in result.skipped:
            out.info(f"skipping snapshot {sid[:8]}: already in the destination")
        out.result(f"copied {len(result.copied)} snapshot(s) ({result.blobs} blobs, "
                   f"{result.bytes} bytes), {len(result.skipped)} already there")
    return 0
