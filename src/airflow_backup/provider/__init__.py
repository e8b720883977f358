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


#: The connection form (Airflow >= 3.2 reads it from here, without importing the hook):
#: labelled fields stored in the connection's extra, and the standard fields relabelled or
#: hidden. The mapping to a repository: airflow_backup.operations.connection_spec.
CONN_FIELDS: dict[str, Any] = {
    "url": {"label": "Repository URL",
            "description": "s3://bucket/prefix, gs://…, az://…, sftp://user@host/path, a "
                           "local path, or restic's s3:https://host/bucket/prefix",
            "schema": {"type": ["string", "null"]}},
    "aws_conn_id": {"label": "Storage connection (aws)",
                    "description": "for s3:// repositories: an Airflow aws connection with "
                                   "the access key, region and endpoint",
                    "schema": {"type": ["string", "null"]}},
    "gcp_conn_id": {"label": "Storage connection (google_cloud_platform)",
                    "description": "for gs:// repositories: an Airflow google_cloud_platform "
                                   "connection with the key file or key JSON and project",
                    "schema": {"type": ["string", "null"]}},
    "wasb_conn_id": {"label": "Storage connection (wasb)",
                     "description": "for az:// repositories: an Airflow wasb connection with "
                                    "the account and its key, a connection string or a SAS",
                     "schema": {"type": ["string", "null"]}},
    "retry_attempts": {"label": "Storage retry attempts",
                       "description": "tries per storage request before a step fails",
                       "schema": {"type": ["integer", "null"], "minimum": 1}},
    "retry_max_time": {"label": "Storage retry time limit (seconds)",
                       "schema": {"type": ["number", "null"], "minimum": 0}},
    "lock_wait": {"label": "Lock wait (seconds)",
                  "description": "how long to wait for a lock another process holds",
                  "schema": {"type": ["number", "null"], "minimum": 0}},
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "port", "login", "schema"],
    "relabeling": {"password": "Repository password"},
    "placeholders": {"password": "the repository's password (masked)",
                     "extra": '{"url": "s3://my-bucket/airflow-backups"}'},
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ProvidersManager reads (it conforms to
    Airflow's ``provider_info.schema.json``)."""
    modules = "airflow_backup.provider"
    return {
        "package-name": "airflow-backup",
        "name": "airflow-backup",
        "description": "Backup and recovery for Apache Airflow, in restic's repository format: "
                       "backup, verify, retention, restore and restore-drill operators, a "
                       "deferrable freshness sensor and an Apprise notifier.",
        "versions": [__version__],
        "integrations": [{
            "integration-name": "airflow-backup",
            "tags": ["backup", "software"],
        }],
        "operators": [{
            "integration-name": "airflow-backup",
            "python-modules": [f"{modules}.operators.backup", f"{modules}.operators.restore",
                               f"{modules}.operators.maintenance", f"{modules}.operators.jobs"],
        }],
        "sensors": [{"integration-name": "airflow-backup",
                     "python-modules": [f"{modules}.sensors.freshness"]}],
        "hooks": [{"integration-name": "airflow-backup",
                   "python-modules": [f"{modules}.hooks.repository"]}],
        "asset-uris": [{"schemes": ["airflow-backup"], "handler": None}],
        "connection-types": [{
            "connection-type": "backup_repository",
            "hook-class-name": f"{modules}.hooks.repository.BackupRepositoryHook",
            "hook-name": "airflow-backup repository",
            "conn-fields": CONN_FIELDS,
            "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
        }],
        "notifications": [f"{modules}.notifications.apprise.BackupNotifier"],
        "config": {
            "airflow_backup": {
                "description": "The Backups page in the Airflow UI (airflow-backup).",
                "options": {
                    "jobs_config": {
                        "description": "The jobs config files the Backups page shows "
                                       "(comma-separated paths). Default: the file the "
                                       "airflow-backup CLI would find ($AIRFLOW_BACKUP_CONFIG,"
                                       " ~/.config/airflow-backup/jobs.yaml, "
                                       "/etc/airflow-backup/jobs.yaml).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/dags/backups.yaml",
                        "default": "",
                    },
                },
            },
        },
        "triggers": [{
            "integration-name": "airflow-backup",
            "python-modules": [f"{modules}.triggers.freshness"],
        }],
    }
