"""Data sources: databases, table exports, object stores and Airflow's metadata, backed up
into snapshots and restored with verification. See :mod:`airflow_backup.sources.base`.

The names below load on first use (PEP 562): every CLI command imports
:mod:`airflow_backup.sources.registry` to recognise a source URL, and loading the backup and
restore machinery with it would slow down every command, most of which never use it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_backup.sources.actions import backup_source, restore_source, source_metadata
    from airflow_backup.sources.base import (
        DataSource,
        RestoreReport,
        SourceRestoreOptions,
        SourceURL,
    )
    from airflow_backup.sources.registry import is_source_url, open_source, register

__all__ = [
    "DataSource",
    "RestoreReport",
    "SourceRestoreOptions",
    "SourceURL",
    "backup_source",
    "is_source_url",
    "open_source",
    "register",
    "restore_source",
    "source_metadata",
]

# Static tools read __all__ and the TYPE_CHECKING imports; __getattr__ reads _HOMES.
# tests/unit/sources/test_urls_and_registry.py keeps the three in step.
_HOMES = {
    "backup_source": "actions", "restore_source": "actions", "source_metadata": "actions",
    "DataSource": "base", "RestoreReport": "base", "SourceRestoreOptions": "base",
    "SourceURL": "base", "is_source_url": "registry", "open_source": "registry",
    "register": "registry",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
