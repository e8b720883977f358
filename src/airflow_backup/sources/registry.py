"""Sources by URL scheme, and by the kind recorded in a snapshot.

Implementations are imported lazily, so a plain file backup never loads a database driver.
A third party adds a source with :func:`register`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from airflow_backup.errors import ConfigError

if TYPE_CHECKING:  # the CLI asks is_source_url of every path; sources load on use
    from airflow_backup.sources.base import DataSource, SourceURL

__all__ = [
    "check_options",
    "is_source_url",
    "kind_of_scheme",
    "kinds",
    "open_parsed",
    "open_source",
    "register",
    "schemes",
    "source_for_kind",
]

SourceFactory = Callable[["SourceURL"], "DataSource"]

# scheme -> (kind, "module:Class")
_BUILTIN: dict[str, tuple[str, str]] = {
    "postgresql": ("postgresql", "airflow_backup.sources.postgres:PostgresSource"),
    "postgres": ("postgresql", "airflow_backup.sources.postgres:PostgresSource"),
    "mysql": ("mysql", "airflow_backup.sources.mysql:MySQLSource"),
    "mariadb": ("mysql", "airflow_backup.sources.mysql:MySQLSource"),
    "sqlite": ("sqlite", "airflow_backup.sources.sqlite:SQLiteSource"),
    "postgresql+pitr": ("postgresql_pitr", "airflow_backup.sources.pg_pitr:PitrSource"),
    "table+postgresql": ("table", "airflow_backup.sources.table_export:TableExportSource"),
    "table+mysql": ("table", "airflow_backup.sources.table_export:TableExportSource"),
    "table+sqlite": ("table", "airflow_backup.sources.table_export:TableExportSource"),
    "s3": ("object_store", "airflow_backup.sources.object_store:ObjectStoreSource"),
    "gs": ("object_store", "airflow_backup.sources.object_store:ObjectStoreSource"),
    "gcs": ("object_store", "airflow_backup.sources.object_store:ObjectStoreSource"),
    "az": ("object_store", "airflow_backup.sources.object_store:ObjectStoreSource"),
    "abfs": ("object_store", "airflow_backup.sources.object_store:ObjectStoreSource"),
    "memory": ("object_store", "airflow_backup.sources.object_store:ObjectStoreSource"),
    "airflow": ("airflow", "airflow_backup.sources.airflow_metadata:AirflowMetadataSource"),
}
_CUSTOM: dict[str, tuple[str, SourceFactory]] = {}
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def register(scheme: str, kind: str, factory: SourceFactory) -> None:
    """Make URLs with ``scheme`` open sources of ``kind`` through ``factory``."""
    _CUSTOM[scheme.lower()] = (kind, factory)


def schemes() -> list[str]:
    """Return every registered URL scheme."""
    return sorted({*_BUILTIN, *_CUSTOM})


def kinds() -> list[str]:
    """Return every registered source kind."""
    return sorted({k for k, _ in _BUILTIN.values()} | {k for k, _ in _CUSTOM.values()})


def kind_of_scheme(scheme: str) -> str:
    """Return the source kind of URLs with ``scheme``. Raise ConfigError if none is
    registered (without loading the source's module)."""
    scheme = scheme.lower()
    if scheme in _CUSTOM:
        return _CUSTOM[scheme][0]
    if scheme not in _BUILTIN:
        raise ConfigError(f"unknown source scheme {scheme!r} (known: {', '.join(schemes())})")
    return _BUILTIN[scheme][0]


def is_source_url(text: str) -> bool:
    """Return whether ``text`` is a URL with a registered source scheme (not a plain path)."""
    m = _SCHEME_RE.match(text)
    return bool(m) and m.group(1).lower() in (_BUILTIN.keys() | _CUSTOM.keys())  # type: ignore[union-attr]


def _factory(scheme: str) -> tuple[str, SourceFactory]:
    if scheme in _CUSTOM:
        return _CUSTOM[scheme]
    if scheme not in _BUILTIN:
        raise ConfigError(f"unknown source scheme {scheme!r} (known: {', '.join(schemes())})")
    kind, target = _BUILTIN[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{scheme} sources need extra packages: pip install "
                          f"'airflow-backup[sources]' ({exc.name} is missing)") from None
    return kind, cast(SourceFactory, getattr(module, class_name))


def check_options(url: SourceURL) -> None:
    """Raise ConfigError naming the query options of ``url`` that its scheme's source does
    not know, and the ones it does (a source registered without ``options`` takes any)."""
    _, factory = _factory(url.scheme)
    known = getattr(factory, "options", None)
    if known is None:
        return
    unknown = sorted({k for k, _ in url.query} - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {url.scheme}:// sources "
                          f"(known: {', '.join(sorted(known)) or 'none'})")


def open_parsed(url: SourceURL) -> DataSource:
    """Return the source for an already parsed URL (internal callers: may carry a password).
    Raise ConfigError for an unknown scheme or query option."""
    _, factory = _factory(url.scheme)
    check_options(url)
    return factory(url)


def _parse(text: str, allow_password: bool) -> SourceURL:
    from airflow_backup.sources.base import SourceURL  # loaded on use, see TYPE_CHECKING

    return SourceURL.parse(text, allow_password=allow_password)


def open_source(url: str, *, allow_password: bool = False) -> DataSource:
    """Return the source for ``url``. Raise ConfigError for an unknown scheme or bad URL."""
    return open_parsed(_parse(url, allow_password))


def source_for_kind(kind: str, target: str, *, allow_password: bool = False) -> DataSource:
    """Return a source of ``kind`` addressing ``target`` (a restore target URL).

    Raise ConfigError if the target's scheme belongs to another kind.
    """
    parsed = _parse(target, allow_password)
    target_kind, factory = _factory(parsed.scheme)
    check_options(parsed)
    if target_kind != kind and not (kind == "airflow" and target_kind in (
            "postgresql", "mysql", "sqlite")):
        raise ConfigError(f"cannot restore a {kind} backup into a {parsed.scheme}:// target")
    if kind == "airflow":
        _, factory = _factory("airflow")
    return factory(parsed)
