"""BackupRepositoryHook: an engine Repository from an Airflow connection.

The connection (type ``backup_repository``) maps to a repository as
:mod:`airflow_backup.operations.connection_spec` describes: URL (``extra.url`` or host, plus
schema as a sub-path), password, ``extra.aws_conn_id`` (S3 credentials from an ``aws``
connection), ``extra.gcp_conn_id`` (GCS credentials from a ``google_cloud_platform``
connection), ``extra.wasb_conn_id`` (Azure Blob credentials from a ``wasb`` connection),
``extra.retry``, ``extra.lock_wait`` and ``extra.faults``. The storage connections are read
field by field: the Google and Azure providers need not be installed. A jobs config whose
repository says ``connection: ID`` uses the same mapping, so one connection serves the
generated DAGs, these operators and the sensor.
"""

from __future__ import annotations

from airflow.sdk import BaseHook

from airflow_backup.connections import ConnectionFields
from airflow_backup.operations.connection_spec import (
    connection_storage,
    connection_url,
    spec_from_connection,
)
from airflow_backup.operations.spec import RepositorySpec, open_repository
from airflow_backup.provider.connections import airflow_connection
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import Storage

__all__ = ["BackupRepositoryHook"]


class BackupRepositoryHook(BaseHook):
    """Open the backup repository an Airflow connection describes (see the module doc)."""

    conn_name_attr = "backup_repository_conn_id"
    default_conn_name = "backup_repository_default"
    conn_type = "backup_repository"
    hook_name = "airflow-backup repository"

    def __init__(self, backup_repository_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.backup_repository_conn_id = backup_repository_conn_id

    def _connection(self) -> ConnectionFields:
        return airflow_connection(self.backup_repository_conn_id)

    def repository_url(self) -> str:
        """Return the repository URL of the connection. Raise ConfigError if it has none."""
        return connection_url(self._connection())

    def get_storage(self) -> Storage:
        """Return the repository's storage with retries (and faults when asked for)."""
        return connection_storage(self._connection(), airflow_connection)

    def get_spec(self) -> RepositorySpec:
        """Return the operations layer's spec of the connection's repository: its URL, the
        connection's password, its retry policy, the default cache (metadata of remote
        repositories cached under AIRFLOW_BACKUP_CACHE_DIR or the worker's ~/.cache),
        ``extra["lock_wait"]`` seconds of waiting for another process's lock."""
        return spec_from_connection(self._connection(), lookup=airflow_connection)

    def get_repository(self) -> Repository:
        """Open the repository with the connection's password. Raise RepositoryNotFound,
        WrongPassword, ConfigError or a storage error (map them with provider.errors)."""
        return open_repository(self.get_spec())

    def get_conn(self) -> Repository:
        """Airflow's generic accessor: the same as :meth:`get_repository`."""
        return self.get_repository()

    def test_connection(self) -> tuple[bool, str]:
        """Open the repository; return (ok, message) for the UI's Test button."""
        try:
            repo = self.get_repository()
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"repository {repo.config.id[:8]} opened"
