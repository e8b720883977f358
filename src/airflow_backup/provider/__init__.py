"""The Apache Airflow provider of airflow-backup: hook, operators, sensor, trigger, notifier.

This package is the only part of airflow-backup that imports Airflow (>= 3.1, through
``airflow.sdk``); the engine never imports it. This module itself stays Airflow-free so that
Airflow's provider discovery (the ``apache_airflow_provider`` entry point) can read
:func:`get_provider_info` cheaply.
"""

from __future__ import annotations

from typing import Any

from airflow_backup import __version__
from airflow_backup.connections import set_lookup

__all__ = ["get_provider_info"]


def _through_airflow(conn_id: str) -> Any:
    from airflow_backup.provider.connections import airflow_connection

    return airflow_connection(conn_id)


# Wherever the provider is loaded (DAG files, tasks, the triggerer), connections named in a
# jobs config are Airflow's: its database and secrets backends, not only the environment.
set_lookup(_through_airflow)


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ProvidersManager reads (it conforms to
    Airflow's ``provider_info.schema.json``)."""
    return {
        "package-name": "airflow-backup",
        "name": "airflow-backup",
        "description": "Backup and recovery for Apache Airflow, in restic's repository format: "
                       "backup, verify, retention, restore and restore-drill operators, a "
                       "deferrable freshness sensor and an Apprise notifier.",
        "versions": [__version__],
        "connection-types": [{
            "connection-type": "backup_repository",
            "hook-class-name":
                "airflow_backup.provider.hooks.repository.BackupRepositoryHook",
            "hook-name": "airflow-backup repository",
        }],
        "notifications": ["airflow_backup.provider.notifications.apprise.BackupNotifier"],
        "triggers": [{
            "integration-name": "airflow-backup",
            "python-modules": ["airflow_backup.provider.triggers.freshness"],
        }],
    }
