"""BackupRepositoryHook: an engine Repository from an Airflow connection.

Connection mapping (connection type ``backup_repository``):

- **Repository URL**: ``extra["url"]`` if set (``s3://bucket/prefix``, ``gs://…``,
  ``sftp://…``, a local path, restic's ``s3:https://host/bucket/prefix``), else ``host``
  (a URL or a path); ``schema``, if set, is appended as a sub-path (``host/schema``).
- **Password**: the connection's password field (never logged, never in XCom).
- **S3 credentials from another connection**: ``extra["aws_conn_id"]`` names an Airflow
  ``aws`` connection; its login/password (access key id/secret), ``extra.aws_session_token``,
  ``extra.region_name`` and ``extra.endpoint_url`` (or ``extra.service_config.s3.endpoint_url``)
  build the s3fs filesystem that is handed to the engine. Without it, the engine's own s3
  handling applies (environment credentials, URL options).
- **Retry policy**: ``extra["retry"]`` = ``{"retry_attempts": "3", "retry_base_delay": "1", …}``
  (the engine's storage retry options; URL query options still override for remote URLs).
- **Fault drills**: ``extra["faults"]`` = the engine's fault spec
  (``"failure_rate=1,permanent=1"``), else ``AIRFLOW_BACKUP_FAULTS`` in the worker's
  environment, injects storage failures (for failure drills and tests only).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_backup.errors import ConfigError
from airflow_backup.operations.spec import (
    PasswordKind,
    PasswordSource,
    RepositorySpec,
    open_repository,
)
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import Storage
from airflow_backup.storage.compose import (
    faults_from_env,
    is_remote_url,
    open_repository_storage,
    split_retry_options,
)
from airflow_backup.storage.faults import parse_fault_spec
from airflow_backup.storage.remote import parse_s3_url
from airflow_backup.storage.retry import RetryPolicy

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

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form layout: host is the URL, password the repository's."""
        return {
            "hidden_fields": ["port", "login"],
            "relabeling": {"host": "Repository URL or path", "schema": "Sub-path (optional)",
                           "password": "Repository password"},
            "placeholders": {"host": "s3://my-bucket/airflow-backups",
                             "extra": '{"aws_conn_id": "aws_default"}'},
        }

    def _connection(self) -> Any:
        return self.get_connection(self.backup_repository_conn_id)

    def repository_url(self) -> str:
        """Return the repository URL of the connection. Raise ConfigError if it has none."""
        conn = self._connection()
        extra = conn.extra_dejson
        url = str(extra.get("url") or conn.host or "")
        if not url:
            raise ConfigError(f"connection {self.backup_repository_conn_id!r} names no "
                              "repository: set its host or extra 'url'")
        if conn.schema:
            url = f"{url.rstrip('/')}/{conn.schema.strip('/')}"
        return url

    def get_storage(self) -> Storage:
        """Return the repository's storage with retries (and faults when asked for)."""
        conn = self._connection()
        extra = conn.extra_dejson
        url = self.repository_url()
        retry = {str(k): str(v) for k, v in dict(extra.get("retry") or {}).items()}
        policy = RetryPolicy.from_options(retry)
        spec = extra.get("faults")
        faults = parse_fault_spec(str(spec)) if spec else faults_from_env()
        aws_conn_id = extra.get("aws_conn_id")
        if aws_conn_id:
            fs, root = self._s3_from_aws_connection(url, str(aws_conn_id))
            return open_repository_storage(fs=fs, root=root, policy=policy, faults=faults,
                                           read_ahead=True)
        return open_repository_storage(url, policy=policy, faults=faults,
                                       read_ahead=is_remote_url(url))

    def _s3_from_aws_connection(self, url: str, aws_conn_id: str) -> tuple[Any, str]:
        base, retry_opts = split_retry_options(url)
        if retry_opts:
            raise ConfigError("with aws_conn_id, put retry options into the extra 'retry'")
        if not (base.startswith("s3:")):
            raise ConfigError("aws_conn_id works with s3 repositories only")
        endpoint, bucket, prefix, opts = parse_s3_url(base)
        aws = self.get_connection(aws_conn_id)
        aws_extra = aws.extra_dejson
        import s3fs  # the `s3` extra

        client_kwargs: dict[str, Any] = {}
        endpoint = (endpoint or aws_extra.get("endpoint_url")
                    or aws_extra.get("service_config", {}).get("s3", {}).get("endpoint_url"))
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        region = opts.pop("region", None) or aws_extra.get("region_name")
        if region:
            client_kwargs["region_name"] = region
        kwargs: dict[str, Any] = {
            "client_kwargs": client_kwargs,
            "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}},
            "skip_instance_cache": True, "use_listings_cache": False,
        }
        if aws.login:
            kwargs["key"] = aws.login
            kwargs["secret"] = aws.password
        if aws_extra.get("aws_session_token"):
            kwargs["token"] = aws_extra["aws_session_token"]
        fs = s3fs.S3FileSystem(**kwargs)
        fs.retries = 1
        return fs, (f"{bucket}/{prefix}" if prefix else bucket)

    def get_spec(self) -> RepositorySpec:
        """Return the operations layer's spec of the connection's repository: its URL, the
        connection's password, its retry policy, the default cache (metadata of remote
        repositories cached under AIRFLOW_BACKUP_CACHE_DIR or the worker's ~/.cache),
        ``extra["lock_wait"]`` seconds of waiting for another process's lock."""
        conn = self._connection()
        extra = conn.extra_dejson
        retry = {str(k): str(v) for k, v in dict(extra.get("retry") or {}).items()}
        return RepositorySpec(self.repository_url(),
                              PasswordSource(PasswordKind.VALUE, conn.password or "",
                                             label=f"connection {conn.conn_id}"),
                              name=self.backup_repository_conn_id,
                              retry=RetryPolicy.from_options(retry),
                              lock_wait=float(extra.get("lock_wait") or 0.0),
                              storage=self.get_storage)

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
