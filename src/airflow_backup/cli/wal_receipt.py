"""``pg archive-wal`` answered from a receipt, and ``pg restore-wal`` from a prefetched
segment, before the rest of the CLI loads.

A file stored ahead by an earlier ``pg archive-wal`` (:mod:`airflow_backup.pitr.spool`)
has a receipt; PostgreSQL's next ``archive_command`` call for it needs only to check the
receipt against the file, which takes milliseconds, while loading the CLI and opening the
repository takes a quarter to half a second. :func:`answer_from_receipt` does that check
with the standard library alone; anything it cannot decide falls through to the normal
command, which checks the spool again. The same for a segment ``restore-wal`` fetched ahead.
Also the one renderer of ``archive-wal``'s result.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

__all__ = ["answer_from_receipt", "archived_json", "archived_text"]


def archived_json(name: str, snapshot_id: str, size: int, *, already: bool,
                  from_receipt: bool, ahead: Sequence[str], seconds: float) -> dict[str, object]:
    """Return the ``wal_archived`` JSON message of ``pg archive-wal``."""
    return {"message_type": "wal_archived", "name": name, "snapshot_id": snapshot_id,
            "size": size, "already_archived": already, "archived_ahead": from_receipt,
            "ahead": list(ahead), "seconds": round(seconds, 3)}


def archived_text(name: str, snapshot_id: str, *, already: bool, from_receipt: bool,
                  ahead: Sequence[str], seconds: float) -> str:
    """Return the human result line of ``pg archive-wal``."""
    if from_receipt:
        return f"{name}: archived ahead as snapshot {snapshot_id[:8]}"
    if already:
        return f"{name}: already archived with the same content (snapshot {snapshot_id[:8]})"
    more = f" (and {len(ahead)} more ahead)" if ahead else ""
    return f"{name}: archived as snapshot {snapshot_id[:8]} in {seconds:.2f}s{more}"


def _pg_verb(args: Sequence[str]) -> str:
    """Return ``archive-wal`` or ``restore-wal`` if ``args`` run that ``pg`` verb with the
    cache on, else ""."""
    if "--" in args or "pg" not in args or "--no-cache" in args:
        return ""
    i = args.index("pg")
    verb = args[i + 1] if i + 1 < len(args) else ""
    return verb if verb in ("archive-wal", "restore-wal") else ""


def answer_from_receipt(argv: Sequence[str]) -> bool:
    """Given the command line, answer ``… pg archive-wal … PATH`` from a valid receipt
    (consumed) or ``… pg restore-wal … NAME DEST`` from a prefetched segment (moved to
    DEST), print the result and return True (the caller exits 0). Otherwise return False
    without side effects. Never raises."""
    started = time.monotonic()
    try:
        args = list(argv)
        verb = _pg_verb(args)
        if not verb or args[-1].startswith("-") or args.index(verb) >= len(args) - 1:
            return False
        from airflow_backup.cachedir import resolve_cache_root
        from airflow_backup.cli.password import option_value, repository_location
        from airflow_backup.pitr.spool import (
            ArchiveSpool,
            PrefetchSpool,
            prefetch_directory,
            spool_directory,
        )

        url = repository_location(option_value(args, ("-r", "--repo")))
        if not url:
            return False
        root = resolve_cache_root(option_value(args, ("--cache-dir",)) or None)
        if verb == "restore-wal":
            name, dest = args[-2], args[-1]
            if name.startswith("-") or args.index(verb) >= len(args) - 2:
                return False
            return PrefetchSpool(prefetch_directory(root, url)).take(name, dest) is not None
        path = args[-1]
        receipt = ArchiveSpool(spool_directory(root, url)).take(path)
        if receipt is None:
            return False
        seconds = time.monotonic() - started
        if "--json" in args:
            line = json.dumps(archived_json(receipt.name, receipt.snapshot_id, receipt.size,
                                            already=True, from_receipt=True, ahead=(),
                                            seconds=seconds))
        else:
            line = archived_text(receipt.name, receipt.snapshot_id, already=True,
                                 from_receipt=True, ahead=(), seconds=seconds)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return True
    except Exception:
        return False
