"""Open remote repositories through fsspec: parse the URL, build the filesystem, wrap it.

Accepted URLs (the fsspec packages are optional extras: ``airflow-backup[s3]``, ``[gcs]``,
``[azure]``, ``[sftp]``)::

    s3://BUCKET/PREFIX[?endpoint=URL&region=R&profile=P]   endpoint also from AWS_ENDPOINT_URL
    s3:https://HOST[:PORT]/BUCKET/PREFIX                    restic's spelling, same repository
    gs://BUCKET/PREFIX          gcs://… too
    az://CONTAINER/PREFIX[?account_name=A]                  abfs://… too
    sftp://[USER@]HOST[:PORT]/PATH

Credentials are never taken from the URL: S3 uses botocore's usual chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, shared config files, instance roles), GCS and Azure their
SDK's defaults, SFTP the SSH agent and ``~/.ssh``. The filesystem never retries by itself
(our retry wrapper does) and never caches listings (other writers may change them).
"""

from __future__ import annotations

import os
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlparse

from airflow_backup.errors import ConfigError
from airflow_backup.redact import is_secret_option, safe_url
from airflow_backup.storage.fsspec_store import FsspecStorage

__all__ = [
    "ATOMIC_PROTOCOLS", "open_fsspec", "open_s3", "parse_s3_url", "storage_for_fs",
]

#: fsspec protocols whose whole-object writes are atomic (no temp file + move needed).
ATOMIC_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}

_EXTRAS = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
           "abfss": "azure", "sftp": "sftp"}


class _S3ClientKwargs(TypedDict, total=False):
    """botocore client arguments (s3fs ``client_kwargs``)."""

    endpoint_url: str
    region_name: str


class _S3Retries(TypedDict):
    max_attempts: int
    mode: str


class _S3Config(TypedDict):
    """botocore ``Config`` arguments (s3fs ``config_kwargs``)."""

    retries: _S3Retries
    connect_timeout: float
    read_timeout: float
    request_checksum_calculation: str
    response_checksum_validation: str


class _S3FileSystemKwargs(TypedDict, total=False):
    """``s3fs.S3FileSystem`` arguments."""

    client_kwargs: _S3ClientKwargs
    config_kwargs: _S3Config
    skip_instance_cache: bool
    use_listings_cache: bool
    profile: str


def _query(url: str) -> tuple[str, dict[str, str]]:
    base, _, query = url.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=True))


def parse_s3_url(url: str) -> tuple[str | None, str, str, dict[str, str]]:
    """Given an S3 repository URL, return (endpoint or None, bucket, prefix, options).

    Raise ConfigError if it names no bucket.
    """
    base, opts = _query(url)
    endpoint = opts.pop("endpoint", None)
    if base.startswith("s3://"):
        rest = base[len("s3://"):]
    elif base.startswith("s3:"):
        rest = base[len("s3:"):]
        if not rest.startswith(("http://", "https://")):
            rest = "https://" + rest
        parsed = urlparse(rest)
        endpoint = f"{parsed.scheme}://{parsed.netloc}"
        rest = parsed.path.lstrip("/")
    else:
        raise ConfigError(f"not an S3 repository URL: {safe_url(base)}")
    bucket, _, prefix = rest.strip("/").partition("/")
    if not bucket:
        raise ConfigError("S3 repository URL names no bucket: use s3://BUCKET/PREFIX")
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL") or None
    return endpoint, bucket, prefix.strip("/"), opts


def _import(module: str, scheme: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        extra = _EXTRAS.get(scheme, scheme)
        raise ConfigError(f"{scheme}:// repositories need the optional '{module}' package: "
                          f"pip install 'airflow-backup[{extra}]'") from None


def open_s3(url: str) -> FsspecStorage:
    """Open an S3 (or S3-compatible) repository URL with s3fs."""
    endpoint, bucket, prefix, opts = parse_s3_url(url)
    s3fs = _import("s3fs", "s3")
    client_kwargs: _S3ClientKwargs = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = opts.pop("region", None) or os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    config: _S3Config = {
        # One retry layer only: ours (storage/retry.py).
        "retries": {"max_attempts": 1, "mode": "standard"},
        "connect_timeout": float(opts.pop("connect_timeout", 10)),
        "read_timeout": float(opts.pop("read_timeout", 60)),
        # No CRC32 of every body sent and received (botocore's default since 1.36): it ran on
        # s3fs's one event-loop thread, 0.2-0.46 s of CPU per 90 MB uploaded (issue 26),
        # and adds nothing here: every file is named by, or sealed with, a hash that every
        # read verifies; in transit TLS (or, over plain http, SigV4's payload hash) covers it.
        # Servers that are S3-compatible but reject those checksum headers are served too.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    kwargs: _S3FileSystemKwargs = {"client_kwargs": client_kwargs, "config_kwargs": config,
                                   "skip_instance_cache": True, "use_listings_cache": False}
    if "profile" in opts:
        kwargs["profile"] = opts.pop("profile")
    if opts:
        raise ConfigError(f"unknown S3 option(s): {', '.join(sorted(opts))}")
    fs = s3fs.S3FileSystem(**kwargs)
    fs.retries = 1
    root = f"{bucket}/{prefix}" if prefix else bucket
    location = (f"s3:{safe_url(endpoint)}/{root}" if endpoint else f"s3://{root}")
    return FsspecStorage(fs, root, location=location, atomic_writes=True)


def open_fsspec(url: str) -> FsspecStorage:
    """Open a gs://, az://, sftp:// (or any other fsspec) repository URL."""
    base, opts = _query(url)
    # URLs end up in argv, configs and logs: credentials come from the environment.
    secret = sorted(k for k in opts if is_secret_option(k))
    if secret:
        raise ConfigError(f"put no credentials in a repository URL (query option(s) "
                          f"{', '.join(secret)}): use the environment or the provider's own "
                          "configuration")
    parsed = urlparse(base)
    scheme = parsed.scheme
    fsspec = _import("fsspec", scheme)
    module = {"gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
              "abfss": "adlfs", "sftp": "sshfs"}.get(scheme)
    if module:
        _import(module, scheme)
    # The URL's query options (strings) go to the filesystem as they are, beside the host.
    kwargs: dict[str, str | int] = dict(opts)
    if scheme == "sftp":
        if not parsed.hostname:
            raise ConfigError("sftp repository URL names no host: use sftp://HOST/PATH")
        if parsed.password:
            raise ConfigError("put no password in an sftp URL: use the SSH agent or keys")
        kwargs["host"] = parsed.hostname
        if parsed.port:
            kwargs["port"] = parsed.port
        if parsed.username:
            kwargs["username"] = parsed.username
        root = parsed.path or "/"
    else:
        root = (parsed.netloc + parsed.path).rstrip("/")
        if not parsed.netloc:
            raise ConfigError(f"{scheme} repository URL names no bucket or container")
    try:
        fs = fsspec.filesystem(scheme, skip_instance_cache=True, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot open {scheme}:// repository: {type(exc).__name__}") from None
    return FsspecStorage(fs, root, location=safe_url(base),
                         atomic_writes=scheme in ATOMIC_PROTOCOLS)


def storage_for_fs(fs: Any, root: str, *, location: str | None = None) -> FsspecStorage:
    """Wrap an already-built fsspec filesystem (for example one made from an Airflow
    connection) as a repository at ``root``."""
    proto = getattr(fs, "protocol", "")
    protos = set(proto) if isinstance(proto, tuple | list) else {proto}
    return FsspecStorage(fs, root, location=location,
                         atomic_writes=bool(protos & ATOMIC_PROTOCOLS))
