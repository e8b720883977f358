"""``postgresql+pitr://user@host:port[/db][?databases=a,b]``: a PostgreSQL server backed up
for point-in-time recovery.

A backup of such a source is a base backup exactly as ``airflow-backup pg basebackup`` takes
it (:func:`airflow_backup.pitr.basebackup.take_base_backup`: one snapshot tagged
``pg-basebackup``); the backup operation dispatches this kind there
(:func:`airflow_backup.operations.backup.backup`), because a base backup is not an export
streamed through the :class:`~airflow_backup.sources.base.DataSource` contract. WAL is
archived by the server's own ``archive_command`` (``airflow-backup -r REPO pg archive-wal
%p``), never by a job. This class exists for the rest of the contract: the job's export
step probes the server (``pg_basebackup`` installed, server reachable, credentials
accepted); :meth:`export` and :meth:`restore` refuse (restore with ``pg restore``).

The URL's database (default ``postgres``) and the ``databases`` query option name the
databases a drill checks with amcheck; SQL assertions run in the first of them. ``passfile``
is libpq's password file. The password itself comes from AIRFLOW_BACKUP_SOURCE_PASSWORD(_FILE)
or PGPASSWORD, never from the URL.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote, urlencode

from airflow_backup.errors import ConfigError
from airflow_backup.sources.base import (
    ExportSink,
    RestoreReport,
    SnapshotReader,
    SourceRestoreOptions,
    SourceURL,
    StoredExport,
)
from airflow_backup.sources.metadata import ExportFacts, SourceDescription, ValidationFacts

__all__ = ["KIND", "SCHEME", "PitrSource", "drill_databases", "is_pitr_url", "server_text",
           "server_url"]

#: The URL scheme and the source kind of PITR sources.
SCHEME = "postgresql+pitr"
KIND = "postgresql_pitr"


def is_pitr_url(text: str) -> bool:
    """Return whether ``text`` is a ``postgresql+pitr://`` URL."""
    return text.lower().startswith(SCHEME + "://")


def server_url(url: SourceURL) -> SourceURL:
    """Return the ``postgresql://`` URL of the server of a PITR URL, as ``pg_basebackup``
    (and ``pg basebackup --dbname``) takes it: user, password, host and port, and
    ``passfile``; no database, no other option."""
    query = tuple((k, v) for k, v in url.query if k == "passfile")
    return SourceURL("postgresql", url.username, url.password, url.host, url.port, "", query)


def server_text(url: SourceURL) -> str:
    """Return :func:`server_url` of ``url`` as text, with its password if it has one (for
    internal callers: never shown, never stored)."""
    server = server_url(url)
    userinfo = quote(server.username, safe="")
    if server.password:
        userinfo += ":" + quote(server.password, safe="")
    netloc = (userinfo + "@" if userinfo else "") + (
        f"[{server.host}]" if ":" in server.host else server.host)
    if server.port is not None:
        netloc += f":{server.port}"
    return f"postgresql://{netloc}" + ("?" + urlencode(server.query) if server.query else "")


def drill_databases(url: SourceURL) -> list[str]:
    """Return the databases a drill checks: the URL's, then those of ``databases``
    (comma-separated), without repeats; ``postgres`` when none is named."""
    names = [url.database] if url.database else []
    names += [n.strip() for n in url.param("databases").split(",") if n.strip()]
    return list(dict.fromkeys(names)) or ["postgres"]


class PitrSource:
    """A PostgreSQL server backed up by base backups plus its archived WAL (module doc)."""

    kind: ClassVar[str] = KIND
    options: ClassVar[frozenset[str]] = frozenset(("passfile", "databases"))

    def __init__(self, url: SourceURL) -> None:
        if url.scheme != SCHEME:
            raise ConfigError(f"not a {SCHEME}:// URL: {url.redacted()}")
        from airflow_backup.sources.postgres import PostgresSource  # psycopg: on use

        self.url = url
        self._server = PostgresSource(
            server_url(url).with_database(drill_databases(url)[0]))

    def probe(self) -> SourceDescription:
        """Check that ``pg_basebackup`` is installed and the server accepts the credentials
        (connecting to the first drill database); read nothing."""
        from airflow_backup.sources.process import find_tool

        find_tool("pg_basebackup")
        conn = self._server.connect(self._server.url.database)
        row = conn.execute("SHOW server_version").fetchone()
        return {"server_version": str(row[0]) if row else "",
                "databases": drill_databases(self.url)}

    def describe(self) -> SourceDescription:
        """Return what :meth:`probe` returns (a base backup records its own metadata)."""
        return self.probe()

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Refuse: the backup operation takes a base backup for this kind instead."""
        raise ConfigError(f"{SCHEME}:// sources are backed up as base backups by the backup "
                          "operation, not exported")

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Refuse (see :meth:`export`)."""
        raise ConfigError(f"{SCHEME}:// sources are not validated as exports")

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Refuse: a base backup is restored with ``airflow-backup pg restore``."""
        raise ConfigError("restore a base backup with 'airflow-backup -r REPO pg restore "
                          "--target-dir DIR --target-time TIME'")

    def cleanup(self) -> None:
        """Close the probe's connections."""
        self._server.cleanup()
