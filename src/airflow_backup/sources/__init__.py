"""Data sources: databases, table exports, object stores and Airflow's metadata, backed up
into snapshots and restored with verification. See :mod:`airflow_backup.sources.base`."""

from airflow_backup.sources.actions import backup_source, restore_source, source_metadata
from airflow_backup.sources.base import DataSource, RestoreReport, SourceRestoreOptions, SourceURL
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
