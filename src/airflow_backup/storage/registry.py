"""Open a storage backend from a repository URL; backends are registered by URL scheme."""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlparse

from airflow_backup.errors import ConfigError
from airflow_backup.storage.base import Storage
from airflow_backup.storage.local import LocalStorage

__all__ = ["open_storage", "register_scheme"]

StorageFactory = Callable[[str], Storage]

_FACTORIES: dict[str, StorageFactory] = {}


def register_scheme(scheme: str, factory: StorageFactory) -> None:
    """Register ``factory`` to open repository URLs that start with ``scheme://``."""
    _FACTORIES[scheme] = factory


def _open_local(url: str) -> Storage:
    path = urlparse(url).path if url.startswith("file://") else url.removeprefix("local:")
    return LocalStorage(os.path.abspath(os.path.expanduser(path)))


register_scheme("file", _open_local)
register_scheme("local", _open_local)


def _open_s3(url: str) -> Storage:
    from airflow_backup.storage.remote import open_s3

    return open_s3(url)


def _open_fsspec(url: str) -> Storage:
    from airflow_backup.storage.remote import open_fsspec

    return open_fsspec(url)


register_scheme("s3", _open_s3)
for _scheme in ("gs", "gcs", "az", "abfs", "abfss", "sftp"):
    register_scheme(_scheme, _open_fsspec)


def open_storage(url: str) -> Storage:
    """Given a repository URL or a plain path, return the storage backend for it.

    A plain path, ``local:PATH`` or ``file://PATH`` opens a local directory; ``s3://``,
    restic's ``s3:https://HOST/BUCKET/PREFIX``, ``gs://``, ``az://`` and ``sftp://`` open
    remote stores through fsspec (:mod:`airflow_backup.storage.remote`). Raise ConfigError
    for an empty URL, an unknown scheme or a missing optional package.
    """
    if not url:
        raise ConfigError("no repository given: use -r/--repo or AIRFLOW_BACKUP_REPOSITORY")
    if url.startswith("local:"):
        return _open_local(url)
    if url.startswith("s3:"):
        return _FACTORIES["s3"](url)
    scheme = urlparse(url).scheme if "://" in url else ""
    if not scheme:
        return _open_local(url)
    try:
        factory = _FACTORIES[scheme]
    except KeyError:
        known = ", ".join(sorted(_FACTORIES))
        raise ConfigError(f"unknown repository scheme {scheme!r} (known: {known})") from None
    return factory(url)
