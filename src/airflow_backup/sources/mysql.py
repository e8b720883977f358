"""MariaDB / MySQL: ``mariadb-dump`` (or ``mysqldump``) per database, streamed.

URL: ``mysql://user@host:3306/db`` (or ``mariadb://``; no database: every non-system database).
The dump runs with ``--single-transaction --routines --triggers --events --hex-blob
--skip-dump-date``; the password travels in ``MYSQL_PWD``, never in argv. Row counts and
``CHECKSUM TABLE`` values are recorded just before the dump; with concurrent writers they
may differ from the dumped data (the dump itself is consistent).
"""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any, ClassVar

import pymysql

from airflow_backup.errors import ConfigError, RestoreTargetExists, ValidationFailed
from airflow_backup.sources.base import (
    ExportSink,
    RestoreReport,
    SnapshotReader,
    SourceRestoreOptions,
    SourceURL,
    StoredExport,
    TableCheck,
    iter_tables,
    restored_stats,
    source_password,
)
from airflow_backup.sources.metadata import (
    ExportFacts,
    SourceDescription,
    TableStats,
    ValidationFacts,
)
from airflow_backup.sources.process import Resources, classify_failure, find_tool

__all__ = ["MySQLSource"]

_SYSTEM = ("information_schema", "performance_schema", "mysql", "sys")


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MySQLSource:
    """A MariaDB or MySQL server or database; see the module docstring for the URL."""

    kind: ClassVar[str] = "mysql"
    #: The URL query options this source reads; any other is an error (a typo must not
    #: silently change what is backed up, or where from).
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, url: SourceURL) -> None:
        if url.scheme not in ("mysql", "mariadb"):
            raise ConfigError(f"not a MySQL/MariaDB URL: {url.redacted()}")
        self.url = url
        self.res = Resources()
        self._conns: list[Any] = []
        self._databases: list[str] = []
        self._sink: ExportSink | None = None

    def _client_args(self) -> list[str]:
        args = ["--protocol=TCP", f"--host={self.url.host or '127.0.0.1'}",
                f"--port={self.url.port or 3306}"]
        # The same user as connect(): the client tools would otherwise use the OS login.
        args.append(f"--user={self.url.username or 'root'}")
        return args

    def _env(self) -> dict[str, str]:
        password = source_password(self.url, "MYSQL_PWD")
        return {"MYSQL_PWD": password} if password is not None else {}

    def connect(self, database: str | None = None) -> Any:
        """Open a pymysql connection (closed by :meth:`cleanup`)."""
        password = source_password(self.url, "MYSQL_PWD")
        try:
            conn = pymysql.connect(host=self.url.host or "127.0.0.1", port=self.url.port or 3306,
                                   user=self.url.username or "root",
                                   # bytes: pymysql encodes a str as latin-1, which fails
                                   # (quoting the character) on any other character.
                                   password=(password or "").encode("utf-8"),
                                   database=database, connect_timeout=10, autocommit=True)
        except pymysql.MySQLError as exc:
            raise classify_failure(f"MySQL at {self.url.redacted()}", str(exc)) from None
        self._conns.append(conn)
        return conn

    def table_stats(self, conn: Any, database: str) -> dict[str, TableStats]:
        """Return ``{table: {rows, checksum}}`` for the base tables of ``database``."""
        out: dict[str, TableStats] = {}
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
                        (database,))
            names = [str(r[0]) for r in cur.fetchall()]
            for name in names:
                full = f"{_quote(database)}.{_quote(name)}"
                cur.execute(f"SELECT COUNT(*) FROM {full}")
                (rows,) = cur.fetchone()
                cur.execute(f"CHECKSUM TABLE {full}")
                checksum = cur.fetchone()[1]
                out[name] = {"rows": int(rows), "checksum": f"mysqlsum:{checksum}"}
        return out

    # ---- backup --------------------------------------------------------------------------

    def describe(self) -> SourceDescription:
        """Check the dump tool and the server; record databases and table counts/checksums."""
        self._dump = find_tool("mariadb-dump") if _has("mariadb-dump") else find_tool("mysqldump")
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            (server,) = cur.fetchone()
            if self.url.database:
                cur.execute("SELECT schema_name FROM information_schema.schemata "
                            "WHERE schema_name = %s", (self.url.database,))
                if cur.fetchone() is None:
                    raise classify_failure(f"MySQL at {self.url.redacted()}",
                                           f"Unknown database '{self.url.database}'")
                self._databases = [self.url.database]
            else:
                cur.execute("SELECT schema_name FROM information_schema.schemata ORDER BY 1")
                self._databases = [str(r[0]) for r in cur.fetchall() if r[0] not in _SYSTEM]
        tables = {f"{db}/{t}": v for db in self._databases
                  for t, v in self.table_stats(conn, db).items()}
        version = subprocess.run([self._dump, "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        return {"server_version": str(server), "tool_version": version,
                "databases": list(self._databases), "tables": tables}

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Stream one dump per database into the sink."""
        self._sink = sink
        files: dict[str, int] = {}
        for db in self._databases:
            path = f"mysql/{db}.sql"
            child = self.res.start(
                [self._dump, *self._client_args(), "--single-transaction", "--routines",
                 "--triggers", "--events", "--hex-blob", "--skip-dump-date", "--", db],
                f"{self._dump.rsplit('/', 1)[-1]} of {db}", env=self._env())
            files[path] = sink.add_stream(path, child.stdout)
            child.check()
        return {"files": files}

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Check each stored dump starts with a dump header and ends with its trailer."""
        assert self._sink is not None
        for db in self._databases:
            path = f"mysql/{db}.sql"
            head, tail = self._sink.head(path), self._sink.tail(path)
            # MariaDB >= 10.11.8 puts a "sandbox mode" comment line before the header.
            if b"-- MariaDB dump" not in head[:1024] and b"-- MySQL dump" not in head[:1024]:
                raise ValidationFailed(f"stored dump of {db} does not start with a dump header")
            if b"-- Dump completed" not in tail[-200:]:
                raise ValidationFailed(f"stored dump of {db} is truncated (no trailer)")
        return {"header_and_trailer": sorted(self._databases)}

    # ---- restore -------------------------------------------------------------------------

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Replay the dump through the ``mariadb`` client into the target, then compare."""
        client = find_tool("mariadb") if _has("mariadb") else find_tool("mysql")
        source_db = options.source_database(stored)
        target_db = self.url.database or source_db
        admin = self.connect()
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                        (target_db,))
            exists = cur.fetchone() is not None
            if exists and not (options.clean or options.force):
                raise RestoreTargetExists(
                    f"database {target_db!r} already exists at {self.url.redacted()}: pass "
                    "--clean to replace it or --force to restore into it")
            if exists and options.clean:
                cur.execute(f"DROP DATABASE {_quote(target_db)}")
            if not exists or options.clean:
                cur.execute(f"CREATE DATABASE {_quote(target_db)}")
        created = not exists or options.clean
        try:
            self.res.feed([client, *self._client_args(), "--", target_db],
                          f"mariadb client into {target_db}", stored.reader,
                          f"mysql/{source_db}.sql", env=self._env())
        except BaseException:
            if not exists:
                with contextlib.suppress(pymysql.MySQLError), admin.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS {_quote(target_db)}")
            raise
        actual = self.table_stats(admin, target_db)
        checks = []
        for table, rows, checksum in iter_tables(stored.source):
            db, _, name = table.partition("/")
            if db == source_db:
                checks.append(TableCheck(name, rows, checksum, *restored_stats(actual, name)))
        return RestoreReport(self.url.with_database(target_db).redacted(), checks,
                             {"database": target_db, "source_database": source_db,
                              "created": created})

    def cleanup(self) -> None:
        """Kill children, remove temp dirs, close connections."""
        self.res.close()
        while self._conns:
            with contextlib.suppress(pymysql.MySQLError):
                self._conns.pop().close()


def _has(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
