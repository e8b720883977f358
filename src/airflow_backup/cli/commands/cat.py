"""``cat``: print an internal repository object (decrypted JSON, or a blob's bytes)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError, IntegrityError
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.select import find_snapshot
from airflow_backup.storage.base import FileType, Handle

_TYPES = {"snapshot": FileType.SNAPSHOT, "index": FileType.INDEX, "lock": FileType.LOCK,
          "key": FileType.KEY}


def register(sub: Any) -> None:
    """Add the ``cat`` parser."""
    p = sub.add_parser("cat", help="print internal objects: config, snapshot, index, key, "
                       "lock, blob, tree")
    p.add_argument("type", choices=["config", "snapshot", "index", "key", "lock", "blob",
                                    "tree"])
    p.add_argument("id", nargs="?", default="", help="object id (or id prefix)")
    p.set_defaults(func=run)


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the object; key files are printed without their sealed master key."""
    repo = open_repository(gopts)
    if args.type == "config":
        _print(repo.config.to_json())
        return 0
    if not args.id:
        raise ConfigError(f"cat {args.type} needs an id")
    if args.type == "snapshot":
        sn = find_snapshot(repo, args.id)
        _print(sn.to_json())
        return 0
    if args.type in ("blob", "tree"):
        repo.load_index()
        try:
            blob_id = bytes.fromhex(args.id)
        except ValueError:
            raise ConfigError(f"invalid blob id {args.id!r}: give the full hex id") from None
        btype = BlobType.TREE if args.type == "tree" else BlobType.DATA
        if not repo.index.has(btype, blob_id) and btype is BlobType.DATA \
                and repo.index.has(BlobType.TREE, blob_id):
            btype = BlobType.TREE
        if not repo.index.has(btype, blob_id):
            raise ConfigError(f"blob {args.id} not found")
        data = repo.load_blob(btype, blob_id)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    ftype = _TYPES[args.type]
    file_id = repo.resolve_id(ftype, args.id)
    if ftype is FileType.KEY:
        obj = json.loads(repo.storage.load(Handle(FileType.KEY, file_id)))
        obj.pop("data", None)  # the sealed master key stays out of terminals and logs
        _print(obj)
        return 0
    try:
        _print(repo.load_raw_json(Handle(ftype, file_id)))
    except IntegrityError:
        raise
    return 0
