"""The one place where storage wrappers are composed.

From the repository outwards::

    CachingStorage      (optional; added after the repository id is known, see with_cache)
     ReadAheadStorage   (optional, for object stores: one ranged GET serves many blob reads)
      RetryingStorage   (always; the only place that retries)
        FaultInjectingStorage   (optional; tests and drills)
          RateLimitedStorage    (optional; --limit-upload/--limit-download, KiB/s)
            backend     (local, fsspec: S3, GCS, Azure, SFTP, …)

Retries sit outside fault injection so that injected faults are retried exactly like real
ones, and inside the cache so that cache hits never wait for the network. The rate limiter
sits right around the backend, as restic's does: what crosses the wire is paced, a retried
transfer again, a cache hit never.

Repository URLs may carry a per-repository retry policy in their query string
(``s3://bucket/prefix?retry_attempts=5&retry_max_time=60``); local paths never do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from airflow_backup.errors import ConfigError
from airflow_backup.redact import strip_authority_userinfo
from airflow_backup.storage.base import Storage
from airflow_backup.storage.cache import CachingStorage, resolve_cache_root
from airflow_backup.storage.faults import FaultInjectingStorage, FaultOptions, parse_fault_spec
from airflow_backup.storage.limiter import RateLimitedStorage, RateLimits
from airflow_backup.storage.readahead import ReadAheadStorage
from airflow_backup.storage.registry import open_storage
from airflow_backup.storage.remote import storage_for_fs
from airflow_backup.storage.retry import RetryingStorage, RetryPolicy

__all__ = [
    "display_location",
    "faults_from_env",
    "is_remote_url",
    "open_repository_storage",
    "split_retry_options",
    "with_cache",
]

_RETRY_KEYS = ("retry_attempts", "retry_base_delay", "retry_max_delay", "retry_max_time")


def is_remote_url(url: str) -> bool:
    """Return whether ``url`` names a remote store (anything but a local path)."""
    if url.startswith(("local:", "file://")):
        return False
    return url.startswith("s3:") or "://" in url


def split_retry_options(url: str) -> tuple[str, dict[str, str]]:
    """Return ``url`` without retry options in its query string, and those options."""
    if not is_remote_url(url) or "?" not in url:
        return url, {}
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    retry = {k: v for k, v in pairs if k in _RETRY_KEYS}
    rest = [(k, v) for k, v in pairs if k not in _RETRY_KEYS]
    return (f"{base}?{urlencode(rest)}" if rest else base), retry


def faults_from_env(environ: Mapping[str, str] | None = None) -> FaultOptions | None:
    """Return fault-injection settings from AIRFLOW_BACKUP_FAULTS, or None if unset."""
    spec = (environ if environ is not None else os.environ).get("AIRFLOW_BACKUP_FAULTS", "")
    return parse_fault_spec(spec) if spec.strip() else None


def open_repository_storage(
    url: str | None = None,
    *,
    fs: Any = None,
    root: str = "",
    backend: Storage | None = None,
    policy: RetryPolicy | None = None,
    faults: FaultOptions | None = None,
    sleep: Callable[[float], None] | None = None,
    read_ahead: bool = False,
    limits: RateLimits | None = None,
) -> Storage:
    """Open a repository's storage with its wrappers.

    Exactly one of ``url``, ``fs`` (an fsspec filesystem, with ``root`` inside it) or
    ``backend`` (any Storage) names the store. ``policy`` is the retry policy (the URL's
    ``retry_*`` options override its fields); ``faults`` are FaultInjectingStorage keyword
    arguments; ``read_ahead`` adds pack read-ahead (for object stores); ``limits`` paces
    uploads and downloads (restic's --limit-upload/--limit-download). The result is a
    RetryingStorage, or a ReadAheadStorage around one. Raise ConfigError for a bad URL or
    options.
    """
    given = sum(x is not None for x in (url, fs, backend))
    if given != 1:
        raise ConfigError("name the store by exactly one of url, fs or backend")
    if url is not None:
        url, retry_opts = split_retry_options(url)
        policy = RetryPolicy.from_options(retry_opts, policy)
        store = open_storage(url)
    elif fs is not None:
        if not root:
            raise ConfigError("an fsspec filesystem needs the repository root inside it")
        store = storage_for_fs(fs, root)
    else:
        assert backend is not None
        store = backend
    if limits:
        store = RateLimitedStorage.from_limits(store, limits)
    if faults:
        store = FaultInjectingStorage(store, **faults)
    retrying = (RetryingStorage(store, policy, sleep=sleep) if sleep is not None
                else RetryingStorage(store, policy))
    return ReadAheadStorage(retrying) if read_ahead else retrying


def with_cache(storage: Storage, repository_id: str, *,
               cache_root: str | os.PathLike[str] | None = None,
               is_tree_pack: Callable[[str], bool] | None = None) -> CachingStorage:
    """Wrap ``storage`` in the metadata cache of the repository ``repository_id``."""
    if not repository_id or any(c not in "0123456789abcdef" for c in repository_id):
        raise ConfigError("the cache needs the repository's hex id")
    root = resolve_cache_root(cache_root)
    return CachingStorage(storage, root / repository_id, is_tree_pack=is_tree_pack)


def display_location(url: str) -> str:
    """Return ``url`` without query string or user information (safe for messages)."""
    return strip_authority_userinfo(url.partition("?")[0])
