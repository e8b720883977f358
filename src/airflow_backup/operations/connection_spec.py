"""A repository defined by an Airflow connection of type ``backup_repository``, as a
:class:`~airflow_backup.operations.spec.RepositorySpec` — one mapping for the provider's hook
(operators, sensor) and for jobs configs whose repository says ``connection: ID``.

Fields:

- **Repository URL**: ``extra["url"]`` if set (``s3://bucket/prefix``, ``gs://…``,
  ``sftp://…``, a path, restic's ``s3:https://host/bucket/prefix``), else ``host``;
  ``schema``, if set, is appended as a sub-path (``host/schema``).
- **Password**: the connection's password (never logged, never in XCom).
- **Storage credentials from another connection**: ``extra["aws_conn_id"]`` names an ``aws``
  connection whose login/password (access key id/secret), ``extra.aws_session_token``,
  ``extra.region_name`` and ``extra.endpoint_url`` (or ``extra.service_config.s3.endpoint_url``)
  build the S3 filesystem. Without it the engine's own S3 handling applies.
- **Retry policy**: ``extra["retry"]`` = ``{"retry_attempts": "3", …}`` (the engine's storage
  retry options), or those options as top-level extra fields (the connection form's
  ``retry_attempts``, ``retry_max_time``); ``extra["lock_wait"]`` seconds of waiting for
  another process's lock.
- **Fault drills**: ``extra["faults"]`` (``"failure_rate=1,permanent=1"``), else
  ``AIRFLOW_BACKUP_FAULTS``, injects storage failures (failure drills and tests only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_backup.connections import ConnectionFields, get_connection
from airflow_backup.errors import ConfigError
from airflow_backup.operations.spec import CacheSpec, PasswordKind, PasswordSource, RepositorySpec
from airflow_backup.storage.base import Storage
from airflow_backup.storage.retry import RetryPolicy

__all__ = ["connection_storage", "connection_url", "spec_from_connection"]


def connection_url(conn: ConnectionFields) -> str:
    """Return the repository URL ``conn`` defines. Raise ConfigError if it has none."""
    url = str(conn.extra.get("url") or conn.host or "")
    if not url:
        raise ConfigError(f"connection {conn.conn_id!r} names no repository: set its host "
                          "or extra 'url'")
    if conn.schema:
        url = f"{url.rstrip('/')}/{conn.schema.strip('/')}"
    return url


def _retry_options(conn: ConnectionFields) -> dict[str, str]:
    # extra.retry (an object), and the connection form's flat retry_* fields.
    retry = conn.extra.get("retry") or {}
    if not isinstance(retry, dict):
        raise ConfigError(f"connection {conn.conn_id!r}: extra 'retry' must be an object")
    flat = {k: v for k, v in conn.extra.items() if k.startswith("retry_") and v not in (None, "")}
    return {str(k): str(v) for k, v in {**retry, **flat}.items()}


def connection_storage(conn: ConnectionFields,
                       lookup: Callable[[str], ConnectionFields] = get_connection
                       ) -> Storage:
    """Return the storage of the repository ``conn`` defines, with retries (and faults when
    asked for); ``lookup`` finds the ``aws_conn_id`` connection."""
    from airflow_backup.storage.compose import (
        faults_from_env,
        is_remote_url,
        open_repository_storage,
    )
    from airflow_backup.storage.faults import parse_fault_spec

    url = connection_url(conn)
    policy = RetryPolicy.from_options(_retry_options(conn))
    spec = conn.extra.get("faults")
    faults = parse_fault_spec(str(spec)) if spec else faults_from_env()
    aws_conn_id = conn.extra.get("aws_conn_id")
    if aws_conn_id:
        fs, root = _s3_from_aws_connection(url, lookup(str(aws_conn_id)))
        return open_repository_storage(fs=fs, root=root, policy=policy, faults=faults,
                                       read_ahead=True)
    return open_repository_storage(url, policy=policy, faults=faults,
                                   read_ahead=is_remote_url(url))


def _s3_from_aws_connection(url: str, aws: ConnectionFields) -> tuple[Any, str]:
    from airflow_backup.storage.compose import split_retry_options
    from airflow_backup.storage.remote import parse_s3_url

    base, retry_opts = split_retry_options(url)
    if retry_opts:
        raise ConfigError("with aws_conn_id, put retry options into the extra 'retry'")
    if not base.startswith("s3:"):
        raise ConfigError("aws_conn_id works with s3 repositories only")
    endpoint, bucket, prefix, opts = parse_s3_url(base)
    import s3fs  # the `s3` extra

    service = aws.extra.get("service_config")
    s3_config = service.get("s3") if isinstance(service, dict) else None
    client_kwargs: dict[str, Any] = {}
    configured = aws.extra.get("endpoint_url") or (
        s3_config.get("endpoint_url") if isinstance(s3_config, dict) else None)
    if endpoint or configured:
        client_kwargs["endpoint_url"] = endpoint or str(configured)
    region = opts.pop("region", None) or aws.extra.get("region_name")
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
    if aws.extra.get("aws_session_token"):
        kwargs["token"] = aws.extra["aws_session_token"]
    fs = s3fs.S3FileSystem(**kwargs)
    fs.retries = 1
    return fs, (f"{bucket}/{prefix}" if prefix else bucket)


def spec_from_connection(conn: ConnectionFields, *, name: str = "",
                         cache: CacheSpec | None = None, lock_wait: float | None = None,
                         inject_faults: bool = True,
                         fallbacks: tuple[RepositorySpec, ...] = (),
                         lookup: Callable[[str], ConnectionFields] = get_connection
                         ) -> RepositorySpec:
    """Return the spec of the repository ``conn`` defines, named ``name`` (default: the
    connection id); ``lock_wait`` overrides the connection's ``extra.lock_wait``."""
    wait = lock_wait if lock_wait is not None else float(
        str(conn.extra.get("lock_wait") or 0.0))
    return RepositorySpec(connection_url(conn),
                          PasswordSource(PasswordKind.VALUE, conn.password,
                                         label=f"connection {conn.conn_id}"),
                          name=name or conn.conn_id,
                          retry=RetryPolicy.from_options(_retry_options(conn)),
                          cache=cache or CacheSpec(), lock_wait=wait,
                          inject_faults=inject_faults, fallbacks=fallbacks,
                          storage=lambda: connection_storage(conn, lookup))
