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
  build the S3 filesystem. ``extra["gcp_conn_id"]`` names a ``google_cloud_platform``
  connection for ``gs://`` repositories: its extra ``key_path`` (a service account key file) or
  ``keyfile_dict`` (the key's JSON), else Google's default credentials; ``project``; and, for
  an emulator, ``endpoint_url`` (or the environment's ``STORAGE_EMULATOR_HOST``), which makes
  the client anonymous unless a key is given (``anonymous: true`` does so for a public
  bucket). ``extra["wasb_conn_id"]`` names a ``wasb`` connection for ``az://``
  repositories: extra ``connection_string``; else the account URL from the host (or extra
  ``account_url``; default ``https://LOGIN.blob.core.windows.net``) with the
  login (account name) and the password or extra ``shared_access_key``/``account_key``
  (account key), or extra ``sas_token``, or extra ``tenant_id`` (login and password are then a
  service principal's client id and secret), else Azure's default credentials. Extras are read
  as the Google and Azure providers read them (also with their ``extra__google_cloud_platform__``
  and ``extra__wasb__`` prefixes), without those providers. At most one of the three may be
  set. Without one the engine's own handling applies (credentials from the environment).
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
    asked for); ``lookup`` finds the ``aws_conn_id``, ``gcp_conn_id`` or ``wasb_conn_id``
    connection."""
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
    storage_conn = _storage_connection(conn, url)
    if storage_conn is not None:
        key, conn_id = storage_conn
        build = {"aws_conn_id": _s3_from_aws_connection,
                 "gcp_conn_id": _gcs_from_gcp_connection,
                 "wasb_conn_id": _azure_from_wasb_connection}[key]
        fields = lookup(conn_id)
        _check_type(fields, key)
        fs, root = build(url, fields)
        return open_repository_storage(fs=fs, root=root, policy=policy, faults=faults,
                                       read_ahead=True)
    return open_repository_storage(url, policy=policy, faults=faults,
                                   read_ahead=is_remote_url(url))


#: The extra fields naming a storage connection, and the URL schemes each one serves.
_STORAGE_CONN_SCHEMES: dict[str, tuple[str, ...]] = {
    "aws_conn_id": ("s3",),
    "gcp_conn_id": ("gs", "gcs"),
    "wasb_conn_id": ("az", "abfs", "abfss"),
}
_STORAGE_CONN_KIND = {"aws_conn_id": "s3", "gcp_conn_id": "gs", "wasb_conn_id": "az"}


def _storage_connection(conn: ConnectionFields, url: str) -> tuple[str, str] | None:
    """Return (extra field, connection id) of the storage connection ``conn`` names, or None.
    Raise ConfigError if it names more than one, or one that does not serve ``url``."""
    named = [(k, str(conn.extra[k])) for k in _STORAGE_CONN_SCHEMES if conn.extra.get(k)]
    if not named:
        return None
    if len(named) > 1:
        raise ConfigError(f"connection {conn.conn_id!r}: set only one of "
                          f"{', '.join(k for k, _ in named)}")
    key, conn_id = named[0]
    schemes = _STORAGE_CONN_SCHEMES[key]
    base = url.partition("?")[0]
    scheme = base.split(":", 1)[0] if ":" in base else ""
    if scheme not in schemes:
        raise ConfigError(f"connection {conn.conn_id!r}: {key} works with "
                          f"{_STORAGE_CONN_KIND[key]}:// repositories only, not "
                          f"{_display_scheme(base)}")
    return key, conn_id


#: The connection types each storage connection may have. Without the Google or Azure
#: provider, Airflow's CLI stores their types as "generic" (with a warning): fine here.
_STORAGE_CONN_TYPES = {"aws_conn_id": ("aws",), "gcp_conn_id": ("google_cloud_platform",),
                       "wasb_conn_id": ("wasb",)}


def _check_type(storage_conn: ConnectionFields, key: str) -> None:
    kind = storage_conn.conn_type.replace("-", "_")
    allowed = _STORAGE_CONN_TYPES[key]
    if key != "aws_conn_id" and kind not in (*allowed, "generic", ""):
        raise ConfigError(f"{key}: connection {storage_conn.conn_id!r} is of type {kind!r}, "
                          f"not {allowed[0]}")


def _display_scheme(url: str) -> str:
    """Return how a repository URL names its kind, for messages (``s3://``, a local path)."""
    if "://" in url:
        return url.split("://", 1)[0] + "://"
    if url.startswith(("s3:", "local:")):
        return url.split(":", 1)[0] + ":"
    return "a local path"


def _field(conn: ConnectionFields, prefix: str, name: str) -> Any:
    """Return ``extra[name]``, else ``extra["extra__PREFIX__NAME"]`` (the providers' older
    spelling), or None when neither is set (empty counts as not set)."""
    for key in (name, f"extra__{prefix}__{name}"):
        value = conn.extra.get(key)
        if value not in (None, ""):
            return value
    return None


def _object_store_root(url: str, conn: ConnectionFields, key: str) -> str:
    """Return ``bucket/prefix`` of a gs:// or az:// URL used with a storage connection."""
    from urllib.parse import urlparse

    from airflow_backup.storage.compose import split_retry_options

    base, retry_opts = split_retry_options(url)
    if retry_opts:
        raise ConfigError(f"with {key}, put retry options into the extra 'retry'")
    base, _, query = base.partition("?")
    if query:
        raise ConfigError(f"with {key}, the repository URL takes no query options: "
                          f"connection {conn.conn_id!r} configures the storage")
    parsed = urlparse(base)
    root = (parsed.netloc + parsed.path).strip("/")
    if not parsed.netloc:
        raise ConfigError(f"{parsed.scheme}:// repository URL names no bucket or container")
    return root


def _gcs_from_gcp_connection(url: str, gcp: ConnectionFields) -> tuple[Any, str]:
    """Return (gcsfs filesystem, root) for a gs:// repository with the credentials of the
    ``google_cloud_platform`` connection ``gcp`` (see the module doc)."""
    import json
    import os

    root = _object_store_root(url, gcp, "gcp_conn_id")
    try:
        import gcsfs  # the `gcs` extra
        import gcsfs.core
    except ImportError:
        raise ConfigError("gs:// repositories need the optional 'gcsfs' package: "
                          "pip install 'airflow-backup[gcs]'") from None
    prefix = "google_cloud_platform"
    who = f"connection {gcp.conn_id!r}"
    for unsupported, instead in (("key_secret_name", "key_path or keyfile_dict"),
                                 ("credential_config_file",
                                  "GOOGLE_APPLICATION_CREDENTIALS (default credentials)")):
        if _field(gcp, prefix, unsupported) is not None:
            raise ConfigError(f"{who}: extra {unsupported!r} is not supported here: "
                              f"use {instead}")
    key_path = _field(gcp, prefix, "key_path")
    keyfile = _field(gcp, prefix, "keyfile_dict")
    token: Any
    if key_path is not None and keyfile is not None:
        raise ConfigError(f"{who}: set key_path or keyfile_dict, not both")
    if key_path is not None:
        token = os.path.expanduser(str(key_path))
        if not os.path.isfile(token):
            # gcsfs would send a missing path as a raw access token: refuse it here.
            raise ConfigError(f"{who}: key_path {token!r} is not a file")
    elif keyfile is not None:
        if isinstance(keyfile, str):
            try:
                keyfile = json.loads(keyfile)
            except ValueError:
                raise ConfigError(f"{who}: extra 'keyfile_dict' is not JSON") from None
        if not isinstance(keyfile, dict):
            raise ConfigError(f"{who}: extra 'keyfile_dict' must be a JSON object")
        token = keyfile
    else:
        token = None
    endpoint = (_field(gcp, prefix, "endpoint_url")
                or os.environ.get("STORAGE_EMULATOR_HOST", "").removeprefix("default"))
    endpoint = str(endpoint or "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        endpoint = f"http://{endpoint}"
    anonymous = str(_field(gcp, prefix, "anonymous") or "").lower() in ("1", "true", "yes")
    if token is None:
        # An emulator takes no credentials; otherwise Google's default chain (as the Google
        # provider), never gcsfs's silent fall-back to anonymous access.
        token = "anon" if endpoint or anonymous else "google_default"
    kwargs: dict[str, Any] = {"token": token, "skip_instance_cache": True,
                              "use_listings_cache": False}
    project = _field(gcp, prefix, "project")
    if project is not None:
        kwargs["project"] = str(project)
    if endpoint:
        kwargs["endpoint_url"] = endpoint.rstrip("/")
    # The JSON-API client: the default one of recent gcsfs also asks a gRPC control plane
    # for each bucket's type, which emulators do not serve.
    cls = gcsfs.core.GCSFileSystem if endpoint else gcsfs.GCSFileSystem
    try:
        fs = cls(**kwargs)
    except Exception as exc:  # its message may quote the key
        raise ConfigError(f"{who}: cannot build the GCS client ({type(exc).__name__})"
                          ) from None
    return fs, root


def _azure_from_wasb_connection(url: str, wasb: ConnectionFields) -> tuple[Any, str]:
    """Return (adlfs filesystem, root) for an az:// repository with the credentials of the
    ``wasb`` connection ``wasb`` (see the module doc)."""
    import logging
    from urllib.parse import urlparse

    root = _object_store_root(url, wasb, "wasb_conn_id")
    try:
        import adlfs  # the `azure` extra
    except ImportError:
        raise ConfigError("az:// repositories need the optional 'adlfs' package: "
                          "pip install 'airflow-backup[azure]'") from None
    # The Azure SDK logs every request at INFO (as the wasb hook does, keep that out of task
    # logs unless asked for).
    http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if http_log.level == logging.NOTSET:
        http_log.setLevel(logging.WARNING)
    prefix = "wasb"
    who = f"connection {wasb.conn_id!r}"
    kwargs: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    connection_string = _field(wasb, prefix, "connection_string")
    if connection_string is not None:
        kwargs["connection_string"] = str(connection_string)
    else:
        account_url = str(_field(wasb, prefix, "account_url") or wasb.host or "")
        if account_url and "://" not in account_url:
            account_url = (f"https://{account_url}" if "." in account_url
                           else "")  # a bare word is no host: the login's default URL
        sas_url = str(_field(wasb, prefix, "sas_token") or "")
        if not account_url and sas_url.startswith(("http://", "https://")):
            account_url = sas_url.partition("?")[0]  # a whole SAS URL names the account
        if not account_url:
            if not wasb.login:
                raise ConfigError(f"{who}: set its login (the storage account name), host "
                                  "(the account URL) or extra 'connection_string'")
            account_url = f"https://{wasb.login}.blob.core.windows.net"
        account_url = account_url.rstrip("/")
        parsed = urlparse(account_url)
        custom_host = not parsed.netloc.endswith(".blob.core.windows.net")
        tenant = _field(wasb, prefix, "tenant_id")
        shared = _field(wasb, prefix, "shared_access_key")
        sas = _field(wasb, prefix, "sas_token")
        # The wasb hook's order: a service principal, the shared key, a SAS token, the
        # password (the account key), extra account_key, Azure's default credentials.
        key = shared or (None if sas else (wasb.password or _field(wasb, prefix,
                                                                     "account_key")))
        account = str(_field(wasb, prefix, "account_name") or "") or (
            "" if tenant else wasb.login) or _account_in_url(parsed)
        if tenant is not None:
            kwargs.update(account_name=account, tenant_id=str(tenant),
                          client_id=wasb.login, client_secret=wasb.password)
            if custom_host:
                kwargs["account_host"] = parsed.netloc
        elif key:
            if not account:
                raise ConfigError(f"{who}: an account key needs the account name (login)")
            # A connection string carries any endpoint (http too, as emulators serve it).
            kwargs["connection_string"] = (f"BlobEndpoint={account_url};AccountName={account};"
                                           f"AccountKey={key}")
        elif sas:
            token = str(sas)
            endpoint = account_url
            if token.startswith(("http://", "https://")):  # a whole SAS URL
                whole = urlparse(token)
                endpoint = f"{whole.scheme}://{whole.netloc}{whole.path.rstrip('/')}"
                token = whole.query
            kwargs["connection_string"] = (f"BlobEndpoint={endpoint};"
                                           f"SharedAccessSignature={token.lstrip('?')}")
        else:
            kwargs.update(account_name=account, anon=False)
            if custom_host:
                kwargs["account_host"] = parsed.netloc
            for name in ("managed_identity_client_id", "workload_identity_tenant_id"):
                value = _field(wasb, prefix, name)
                if value is not None:
                    kwargs[name] = str(value)
    try:
        fs = adlfs.AzureBlobFileSystem(**kwargs)
    except Exception as exc:  # its message may quote the connection string
        raise ConfigError(f"{who}: cannot build the Azure Blob client ({type(exc).__name__})"
                          ) from None
    return fs, root


def _account_in_url(parsed: Any) -> str:
    """Return the storage account an account URL names: the first label of its host
    (``NAME.blob.core.windows.net``), or for an emulator's ``http://127.0.0.1:10000/NAME``
    its first path segment."""
    host = str(parsed.hostname or "")
    if "." in host and not host.replace(".", "").isdigit():
        return host.split(".", 1)[0]
    return str(parsed.path).strip("/").split("/", 1)[0]


def _s3_from_aws_connection(url: str, aws: ConnectionFields) -> tuple[Any, str]:
    from airflow_backup.storage.compose import split_retry_options
    from airflow_backup.storage.remote import parse_s3_url

    base, retry_opts = split_retry_options(url)
    if retry_opts:
        raise ConfigError("with aws_conn_id, put retry options into the extra 'retry'")
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
    _storage_connection(conn, connection_url(conn))  # a mismatch is a config error now
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
