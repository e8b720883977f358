"""Where the local cache lives, with the standard library alone (the CLI's receipt fast path
finds it before the rest of the package loads)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_cache_root"]


def resolve_cache_root(given: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache root: ``given`` (``--cache-dir``; ``~`` expanded) if set, else from
    AIRFLOW_BACKUP_CACHE_DIR, XDG_CACHE_HOME or ~/.cache."""
    if given:
        return Path(given).expanduser()
    env = os.environ
    if env.get("AIRFLOW_BACKUP_CACHE_DIR"):
        return Path(env["AIRFLOW_BACKUP_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow-backup"
