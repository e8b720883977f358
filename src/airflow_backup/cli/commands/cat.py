"""``cat``: print an internal repository object (decrypted JSON, or a blob's bytes)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from airflow_backup.cli.commands.common import snapshot_file_json
from airflow_backup.cli.context import GlobalOptions, open_repository
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError, IntegrityError, first_line
from airflow_backup.repository import gojson
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


# The indenting encoder recurses once per level; a document restic wrote nests a few levels.
_MAX_PRINT_DEPTH = 512


def _print(obj: Any, what: Handle | str = "") -> None:
    """Print ``obj`` as indented JSON. Raise IntegrityError naming ``what`` if it nests too
    deeply to print."""
    if gojson.depth_exceeds(obj, _MAX_PRINT_DEPTH):
        raise IntegrityError(f"{what}: nested deeper than {_MAX_PRINT_DEPTH} levels")
    sys.stdout.write(gojson.go_text(json.dumps(obj, indent=2, ensure_ascii=False)) + "\n")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the object; key files are printed without their sealed master key. A malformed
    snapshot named by id is printed as stored, with the reason as a warning."""
    repo = open_repository(gopts)
    if args.type == "config":
        _print(repo.config.to_json())
        return 0
    if not args.id:
        raise ConfigError(f"cat {args.type} needs an id")
    if args.type == "snapshot":
        try:
            sn = find_snapshot(repo, args.id)
        except IntegrityError as exc:
            if args.id == "latest":
                raise
            # A malformed snapshot is shown as stored, to see what is wrong with it (a file
            # that fails its MAC or id cannot be shown and stays an error).
            handle = Handle(FileType.SNAPSHOT, repo.resolve_id(FileType.SNAPSHOT, args.id))
            obj = repo.load_raw_json(handle)
            out.warn(f"warning: {exc}")
            _print(obj, handle)
            return 0
        _print(snapshot_file_json(sn))
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
    handle = Handle(ftype, repo.resolve_id(ftype, args.id))
    if ftype is FileType.KEY:
        try:
            obj = gojson.loads(repo.storage.load(handle))
        except ValueError as exc:
            raise IntegrityError(f"{handle}: invalid JSON: {first_line(exc)}") from exc
        if isinstance(obj, dict):
            obj.pop("data", None)  # the sealed master key stays out of terminals and logs
        _print(obj, handle)
        return 0
    _print(repo.load_raw_json(handle), handle)
    return 0
