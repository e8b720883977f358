"""The data-source contract: what every source (PostgreSQL, MariaDB, SQLite, …) implements.

A source is addressed by a URL (``postgresql://user@host:5432/db``). One backup of a source is
one snapshot: :meth:`DataSource.describe` records what is being exported, :meth:`export` streams
one or more files into an :class:`ExportSink`, :meth:`validate` reads the stored export back
(the snapshot is written only if it passes), and :meth:`restore` writes a snapshot into a
target and compares row counts and checksums with those recorded. :meth:`cleanup` always runs
and removes temp files and child processes.

Secrets never reach a snapshot, a log line or argv: :meth:`SourceURL.redacted` is the only
form of a URL that is stored or shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.redact import safe_query
from airflow_backup.repository.tree import Node
from airflow_backup.sources.metadata import (
    ExportFacts,
    SourceDescription,
    SourceMetadata,
    TableStats,
    ValidationFacts,
    json_object,
)

__all__ = [
    "DATABASE_SCHEMES",
    "DataSource",
    "ExportSink",
    "RestoreReport",
    "SnapshotReader",
    "SourceRestoreOptions",
    "SourceURL",
    "StoredExport",
    "TableCheck",
    "mismatch_summary",
    "restored_stats",
    "source_password",
]

#: Database schemes: their paths name a database, so an ``@`` there is a password's.
DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "mariadb"})
_MALFORMED = ("invalid source URL: its user, password, host or port cannot be read "
              "(%-encode '/', '#', '?', '@' and ':' in a user name or password)")


@dataclass(frozen=True, slots=True)
class SourceURL:
    """A parsed source URL. ``password`` is kept only for the process that needs it."""

    scheme: str
    username: str = ""
    password: str = ""
    host: str = ""
    port: int | None = None
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str, *, allow_password: bool = False) -> SourceURL:
        """Parse ``url``. Raise ConfigError if it is malformed or carries a password while
        ``allow_password`` is false (passwords belong in the environment, not argv)."""
        # Never the parser's own message: it quotes the part of the URL it could not read,
        # which is where a password with a raw '/', '#' or '?' ends up.
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigError(_MALFORMED) from None
        if not parts.scheme:
            raise ConfigError("invalid source URL: no scheme")
        if parts.scheme.lower() in DATABASE_SCHEMES and "@" in parts.path:
            raise ConfigError(_MALFORMED)  # user:1234/rest-of-password@host: not a port
        if parts.password is not None and not allow_password:
            raise ConfigError(
                f"{parts.scheme} URL contains a password: put it in "
                "AIRFLOW_BACKUP_SOURCE_PASSWORD or a passfile, never on the command line")
        query = tuple(parse_qsl(parts.query, keep_blank_values=True))
        return cls(scheme=parts.scheme.lower(), username=unquote(parts.username or ""),
                   password=unquote(parts.password or ""), host=parts.hostname or "",
                   port=port, path=unquote(parts.path), query=query)

    def param(self, name: str, default: str = "") -> str:
        """Return the last value of query parameter ``name`` (or ``default``)."""
        value = default
        for k, v in self.query:
            if k == name:
                value = v
        return value

    def flag(self, name: str) -> bool:
        """Return whether query parameter ``name`` is set to a true value."""
        return self.param(name).lower() in ("1", "true", "yes", "on")

    @property
    def database(self) -> str:
        """Return the first path component (the database name for server sources)."""
        return self.path.strip("/").split("/", 1)[0]

    def with_database(self, name: str) -> SourceURL:
        """Return a copy naming database ``name``."""
        return SourceURL(self.scheme, self.username, self.password, self.host, self.port,
                         "/" + name, self.query)

    def redacted(self) -> str:
        """Return the URL without password or secret query parameters (safe to store)."""
        netloc = quote(self.username, safe="") + "@" if self.username else ""
        netloc += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        query = safe_query(self.query)
        text = f"{self.scheme}://{netloc}{quote(self.path)}"
        return text + ("?" + urlencode(query) if query else "")

    def __repr__(self) -> str:
        return f"SourceURL({self.redacted()!r})"


def source_password(url: SourceURL, *native_env: str) -> str | None:
    """Return the password for ``url``: from the URL (internal callers only), else
    AIRFLOW_BACKUP_SOURCE_PASSWORD, else the file named by AIRFLOW_BACKUP_SOURCE_PASSWORD_FILE,
    else the first set variable of ``native_env`` (PGPASSWORD, MYSQL_PWD), else None (the client's
    own passfile, e.g. ~/.pgpass, may still apply). Raise ConfigError if the file is unreadable.
    """
    if url.password:
        return url.password
    env = os.environ
    if "AIRFLOW_BACKUP_SOURCE_PASSWORD" in env:
        return env["AIRFLOW_BACKUP_SOURCE_PASSWORD"]
    path = env.get("AIRFLOW_BACKUP_SOURCE_PASSWORD_FILE", "")
    if path:
        from airflow_backup.passwords import from_file

        return from_file(path, "source password file")
    for name in native_env:
        if name in env:
            return env[name]
    return None


@dataclass(slots=True)
class TableCheck:
    """Recorded and restored row count and checksum of one table (checksum may be empty)."""

    table: str
    rows: int
    checksum: str = ""
    restored_rows: int | None = None
    restored_checksum: str = ""

    @property
    def ok(self) -> bool:
        """Return whether the restored table matches what was recorded."""
        if self.restored_rows != self.rows:
            return False
        return not self.checksum or self.checksum == self.restored_checksum


def mismatch_summary(bad: list[TableCheck]) -> str:
    """Describe failed table checks in one line: how many, and the first one's numbers."""
    first = bad[0]
    return (f"{len(bad)} table(s) differ from the backup; first: {first.table}: "
            f"{first.restored_rows} rows (expected {first.rows})"
            + (", checksum differs" if first.restored_rows == first.rows else ""))


def restored_stats(actual: dict[str, TableStats], table: str) -> tuple[int | None, str]:
    """Return the row count (None: the table is missing) and checksum of a restored table."""
    got = actual.get(table)
    return (None, "") if got is None else (got["rows"], got.get("checksum", ""))


@dataclass(slots=True)
class RestoreReport:
    """What a source restore wrote and how it compared with the backup's records."""

    target: str
    checks: list[TableCheck] = field(default_factory=list)
    details: JSONObject = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Return whether every compared table matches."""
        return all(c.ok for c in self.checks)

    def mismatches(self) -> list[TableCheck]:
        """Return the tables whose count or checksum differs."""
        return [c for c in self.checks if not c.ok]


@dataclass(slots=True)
class SourceRestoreOptions:
    """How to treat an existing target.

    ``clean``: drop what exists first. ``force``: write into an existing target, and accept a
    schema revision that differs from the backup's. ``on_existing``: for key-value data
    (Airflow variables, connections, pools): ``fail``, ``skip`` or ``overwrite``.
    ``database``: which database of a multi-database snapshot to restore.
    """

    clean: bool = False
    force: bool = False
    on_existing: str = "fail"
    database: str = ""

    def source_database(self, stored: StoredExport) -> str:
        """Given a stored export of one or more databases, return the one to restore: the
        one named by ``database``, else the only one. Raise ConfigError if that is not
        one of them (or the export holds several and none was named)."""
        databases = [str(d) for d in stored.source.get("databases", [])]
        chosen = self.database or (databases[0] if len(databases) == 1 else "")
        if chosen not in databases:
            raise ConfigError(f"snapshot holds database(s) {', '.join(databases)}: choose "
                              "one with --database")
        return chosen


class ExportSink(Protocol):
    """Where a source writes its export: files of the snapshot being built."""

    def add_stream(self, path: str, stream: BinaryIO) -> int:
        """Store ``stream`` as the file ``path`` (``a/b.sql``); return its size."""
        ...

    def add_directory(self, path: str, local_dir: str) -> int:
        """Store the regular files below ``local_dir`` under ``path``; return bytes stored."""
        ...

    def add_node(self, path: str, node: Node) -> None:
        """Place a file node already stored by an earlier snapshot (unchanged content)."""
        ...

    def node(self, path: str) -> Node:
        """Return the node of a file stored in this export (to attach metadata to it)."""
        ...

    def digest(self, path: str) -> str:
        """Return the SHA-256 (hex) of a file stored in this export."""
        ...

    def stable_token(self, label: str) -> str:
        """Return a per-repository secret token, the same in every backup (for tools that
        would otherwise put a random value into their output and spoil deduplication)."""
        ...

    def head(self, path: str) -> bytes:
        """Return the first bytes (up to 64 KiB) of a stored file."""
        ...

    def tail(self, path: str) -> bytes:
        """Return the last bytes (up to 64 KiB) of a stored file."""
        ...


class SnapshotReader(Protocol):
    """Read access to the files of one (possibly not yet committed) source snapshot."""

    def files(self, prefix: str = "") -> list[str]:
        """Return the paths of the regular files below ``prefix``."""
        ...

    def nodes(self, prefix: str = "") -> list[tuple[str, Node]]:
        """Return ``(path, node)`` for the regular files below ``prefix``."""
        ...

    def copy_to(self, path: str, out: BinaryIO) -> int:
        """Write the file ``path`` to ``out``; return the bytes written."""
        ...

    def extract(self, path: str, local_dir: str) -> None:
        """Restore the directory ``path`` of the snapshot into ``local_dir``."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """Return the whole content of a (small) file."""
        ...


@dataclass(frozen=True, slots=True)
class StoredExport:
    """One source snapshot as a source sees it: its id, time, recorded metadata (the
    snapshot's ``airflow_backup`` object: ``source``, ``export``, ``validation``) and files."""

    snapshot_id: str
    time: str
    metadata: SourceMetadata
    reader: SnapshotReader

    @property
    def source(self) -> SourceDescription:
        """Return what :meth:`DataSource.describe` recorded at backup time."""
        value = self.metadata.get("source")
        return value if isinstance(value, dict) else {}

    @property
    def export(self) -> JSONObject:
        """Return the facts :meth:`DataSource.export` recorded (as stored: JSON to narrow)."""
        return json_object(self.metadata.get("export"))


class DataSource(Protocol):
    """A backup source. Instances are made from a URL by the registry and used once."""

    kind: ClassVar[str]
    #: The URL query options the source reads (the registry refuses any other).
    options: ClassVar[frozenset[str]]
    url: SourceURL

    def describe(self) -> SourceDescription:
        """Return what to record about the source: server and tool versions, databases,
        tables with row counts and checksums (the backup puts kind and url first). Called
        before :meth:`export`; raise SourceUnavailable, SourceAuthFailed or ToolMissing here
        so that a bad source fails early."""
        ...

    def probe(self) -> SourceDescription:
        """Check, cheaply, that the source can be backed up now: its tools are installed,
        its server answers and accepts the credentials, what the URL names exists. Read no
        data, count nothing, lock nothing, start no dump; return a short description (e.g.
        its databases). Raise what :meth:`describe` raises. A job's export step calls this;
        the store step then describes and exports once."""
        ...

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Stream the export into ``sink``; return facts to record (sizes, watermarks).

        ``previous`` is the newest earlier export of the same source URL in the repository
        (for incremental sources). Raise DumpFailed if the producer fails.
        """
        ...

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Check that the stored export is readable; return facts to record. Raise
        ValidationFailed if it is not."""
        ...

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Restore ``stored`` into this source's URL (the target) and compare with what
        was recorded. ``history`` lists the earlier exports of the same source URL, oldest
        first (incremental sources replay them). Raise RestoreTargetExists if the target
        exists and ``options`` do not allow replacing it."""
        ...

    def cleanup(self) -> None:
        """Remove temp files and stop child processes. Safe to call more than once."""
        ...


def iter_tables(source: SourceDescription) -> Iterator[tuple[str, int, str]]:
    """Yield ``(table, rows, checksum)`` recorded in ``source['tables']``."""
    tables = source.get("tables") or {}
    if isinstance(tables, dict):
        for name, info in sorted(tables.items()):
            if isinstance(info, dict):
                yield str(name), int(info.get("rows", 0)), str(info.get("checksum", ""))
