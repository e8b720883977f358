"""The Asset of a backup job: one URI per job, ``airflow-backup://jobs/<job>``, for the
generated DAGs and the operators alike, so a DAG scheduled on a job's backups runs whichever
front end made them. The event fires only once the backup is stored AND verified."""

from __future__ import annotations

from airflow.sdk import Asset

__all__ = ["ASSET_SCHEME", "backup_asset"]

ASSET_SCHEME = "airflow-backup"


def backup_asset(job: str) -> Asset:
    """Return the Asset of backup job ``job``."""
    return Asset(uri=f"{ASSET_SCHEME}://jobs/{job}", name=f"backup__{job}",
                 group="airflow-backup")
