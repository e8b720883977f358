"""MariaDB / MySQL: ``mariadb-dump`` (or ``mysqldump``) per database, streamed.

URL: ``mysql://user@host:3306/db`` (or ``mariadb://``; no database: every non-system database).
The dump runs with ``--single-transaction --routines --triggers --events --hex-blob
--skip-dump-date`` (and ``--dump-history`` where the tool has it, so system-versioned tables
keep their history); the password travels in ``MYSQL_PWD``, never in argv.

Row counts and ``CHECKSUM TABLE`` values are taken at the dump's own snapshot: under a
brief ``FLUSH TABLES WITH READ LOCK`` (as ``mariadb-dump --master-data`` takes it) our
statistics transaction and every database's dump transaction start, then the lock is
released and the statistics are read in that transaction. Without the RELOAD privilege, or
if the lock cannot be had within 10 s, they are read in a transaction started just before
the dumps, and the snapshot records why (``tables_at``).

A restore always replays into a staging database first and checks it; only a replay that
succeeded and matches the records is swapped into the target (see :mod:`.mysql_swap`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any, ClassVar

import pymysql

from airflow_backup.errors import (
    ConfigError,
    DumpFailed,
    RestoreError,
    RestoreMismatch,
    RestoreTargetExists,
    ValidationFailed,
)
from airflow_backup.jsontypes import JSONObject
from airflow_backup.sources.base import (
    ExportSink,
    RestoreReport,
    SnapshotReader,
    SourceRestoreOptions,
    SourceURL,
    StoredExport,
    TableCheck,
    iter_tables,
    mismatch_summary,
    restored_stats,
    source_password,
)
from airflow_backup.sources.metadata import (
    ExportFacts,
    SourceDescription,
    TableStats,
    ValidationFacts,
)
from airflow_backup.sources.mysql_swap import merge_in, swap_in
from airflow_backup.sources.process import Child, Resources, classify_failure, find_tool

__all__ = ["MySQLSource"]

_SYSTEM = ("information_schema", "performance_schema", "mysql", "sys")
#: Printed by ``mariadb-dump --verbose`` once its transaction has started.
_STARTED = b"-- Setting savepoint"
#: How long a backup waits for the global read lock before taking statistics without it.
_LOCK_WAIT = 10


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
        self._dumps: dict[str, Child] = {}
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
        """Return ``{table: {rows, checksum}}`` for the tables of ``database``: base tables
        and system-versioned ones (whose rows include their history), not views or
        sequences."""
        out: dict[str, TableStats] = {}
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, table_type FROM information_schema.tables WHERE "
                        "table_schema = %s AND table_type IN ('BASE TABLE', "
                        "'SYSTEM VERSIONED') ORDER BY 1", (database,))
            names = [(str(r[0]), str(r[1])) for r in cur.fetchall()]
            for name, kind in names:
                full = f"{_quote(database)}.{_quote(name)}"
                history = " FOR SYSTEM_TIME ALL" if kind == "SYSTEM VERSIONED" else ""
                cur.execute(f"SELECT COUNT(*) FROM {full}{history}")
                (rows,) = cur.fetchone()
                cur.execute(f"CHECKSUM TABLE {full}")
                checksum = cur.fetchone()[1]
                out[name] = {"rows": int(rows), "checksum": f"mysqlsum:{checksum}"}
        return out

    # ---- backup --------------------------------------------------------------------------

    @staticmethod
    def _dump_tool() -> str:
        return find_tool("mariadb-dump") if _has("mariadb-dump") else find_tool("mysqldump")

    def _server_and_databases(self, conn: Any) -> tuple[str, list[str]]:
        """The server's version, and the database the URL names (ConfigError-like failure
        if it does not exist) or every non-system database."""
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            (server,) = cur.fetchone()
            if self.url.database:
                cur.execute("SELECT schema_name FROM information_schema.schemata "
                            "WHERE schema_name = %s", (self.url.database,))
                if cur.fetchone() is None:
                    raise classify_failure(f"MySQL at {self.url.redacted()}",
                                           f"Unknown database '{self.url.database}'")
                return str(server), [self.url.database]
            cur.execute("SELECT schema_name FROM information_schema.schemata ORDER BY 1")
            return str(server), [str(r[0]) for r in cur.fetchall() if r[0] not in _SYSTEM]

    def probe(self) -> SourceDescription:
        """Check the dump tool and the server (and the database the URL names) without
        locking, counting or dumping anything."""
        self._dump_tool()
        server, databases = self._server_and_databases(self.connect())
        return {"server_version": server, "databases": databases}

    def describe(self) -> SourceDescription:
        """Check the dump tool and the server, start one dump per database and record the
        databases and their tables' counts/checksums at the dumps' snapshot."""
        self._dump = self._dump_tool()
        help_text = subprocess.run([self._dump, "--help"], capture_output=True, text=True,
                                   check=False).stdout
        self._history = "--dump-history" in help_text
        conn = self.connect()
        server, self._databases = self._server_and_databases(conn)
        properties = {db: self._properties(conn, db) for db in self._databases}
        tables_at = self._start_dumps(conn)
        tables = {f"{db}/{t}": v for db in self._databases
                  for t, v in self.table_stats(conn, db).items()}
        with conn.cursor() as cur:
            cur.execute("COMMIT")
        version = subprocess.run([self._dump, "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        return {"server_version": str(server), "tool_version": version,
                "databases": list(self._databases), "tables": tables, "tables_at": tables_at,
                "database_properties": properties}

    @staticmethod
    def _properties(conn: Any, database: str) -> JSONObject:
        """Return what the dump leaves out of a database: its default character set and
        collation (a restore creates the database with them)."""
        with conn.cursor() as cur:
            cur.execute("SELECT default_character_set_name, default_collation_name FROM "
                        "information_schema.schemata WHERE schema_name = %s", (database,))
            row = cur.fetchone()
        return {"character_set": str(row[0]), "collation": str(row[1])} if row else {}

    def _start_dumps(self, stats: Any) -> str:
        """Start every database's dump and a REPEATABLE READ transaction on ``stats`` that
        sees what the dumps see; return where the statistics stand (``tables_at``)."""
        lock = self.connect()
        tables_at = "dump snapshot"
        with lock.cursor() as cur:
            cur.execute(f"SET SESSION lock_wait_timeout = {_LOCK_WAIT}")
            try:
                # No commit can happen while it is held, so every transaction started
                # under it sees the same data.
                cur.execute("FLUSH TABLES WITH READ LOCK")
            except pymysql.MySQLError as exc:
                tables_at = ("just before the dump: FLUSH TABLES WITH READ LOCK failed: "
                             f"{exc.args[-1]}")
        try:
            with stats.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            for db in self._databases:
                child = self.res.start(
                    [self._dump, *self._client_args(), "--single-transaction", "--routines",
                     "--triggers", "--events", "--hex-blob", "--skip-dump-date", "--verbose",
                     *(["--dump-history"] if self._history else []), "--", db],
                    f"{os.path.basename(self._dump)} of {db}", env=self._env())
                if not child.wait_for_stderr(_STARTED, 60.0):
                    if child.proc.poll() is not None:
                        child.check()
                    raise DumpFailed(f"{child.what} did not start its transaction in 60 s")
                self._dumps[db] = child
        finally:
            with lock.cursor() as cur:
                cur.execute("UNLOCK TABLES")
        return tables_at

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Stream each database's dump (started by :meth:`describe`) into the sink."""
        self._sink = sink
        files: dict[str, int] = {}
        for db in self._databases:
            path = f"mysql/{db}.sql"
            child = self._dumps[db]
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
        """Replay the dump into a staging database, compare it with the records, and only
        then move it into the target: created if missing, its contents replaced with
        ``--clean``, added to with ``--force`` (refused if a name is taken). A failed replay
        or comparison leaves the target as it was."""
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
        tag = f"_abk_restore_{os.getpid()}"
        staging = target_db if not exists else f"{target_db[:40]}{tag}"
        recorded = stored.source.get("database_properties")
        props = recorded.get(source_db) if isinstance(recorded, dict) else None
        props = props if isinstance(props, dict) else {}
        # A new database gets the source's defaults (tables carry their own); the staging
        # database the target's, since its tables move into the target.
        defaults = self._properties(admin, target_db) if exists else props
        create = f"CREATE DATABASE {_quote(staging)}"
        if defaults.get("character_set") and defaults.get("collation"):
            create += (f" CHARACTER SET {_quote(str(defaults['character_set']))} "
                       f"COLLATE {_quote(str(defaults['collation']))}")
        with admin.cursor() as cur:
            cur.execute(create)
        try:
            self._replay(client, admin, stored, source_db, staging, target_db)
            actual = self.table_stats(admin, staging)
            checks = []
            for table, rows, checksum in iter_tables(stored.source):
                db, _, name = table.partition("/")
                if db == source_db:
                    checks.append(TableCheck(name, rows, checksum,
                                             *restored_stats(actual, name)))
            bad = [c for c in checks if not c.ok]
            if bad:
                raise RestoreMismatch(
                    f"the restored copy of {target_db} is not the backup: "
                    f"{mismatch_summary(bad)}" + ("; target left as it was" if exists else ""))
            if exists and options.clean:
                swap_in(admin, staging, target_db, f"{target_db[:40]}_abk_old_{os.getpid()}")
            elif exists:
                merge_in(admin, staging, target_db)
        except BaseException:
            self._drop(admin, staging)
            raise
        if exists:
            self._drop(admin, staging)
        return RestoreReport(self.url.with_database(target_db).redacted(), checks,
                             {"database": target_db, "source_database": source_db,
                              "created": not exists})

    def _replay(self, client: str, admin: Any, stored: StoredExport, source_db: str,
                staging: str, target_db: str) -> None:
        # The client's own packet limit (16 MiB) must not be what stops a large row; the
        # server's limit is then named in the error, with what to do about it.
        try:
            self.res.feed([client, *self._client_args(), "--max-allowed-packet=1G", "--",
                           staging], f"mariadb client into {target_db}", stored.reader,
                          f"mysql/{source_db}.sql", env=self._env())
        except RestoreError as exc:
            text = str(exc).lower()
            if "max_allowed_packet" not in text and "gone away" not in text:
                raise
            with admin.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.max_allowed_packet")
                (limit,) = cur.fetchone()
            raise RestoreError(
                f"{exc} (a statement of the dump is larger than the server's "
                f"max_allowed_packet of {int(limit) // (1 << 20)} MiB: raise it, e.g. "
                "SET GLOBAL max_allowed_packet = 1073741824, and restore again)") from None

    def _drop(self, admin: Any, name: str) -> None:
        with contextlib.suppress(pymysql.MySQLError), admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {_quote(name)}")

    def cleanup(self) -> None:
        """Kill children, remove temp dirs, close connections."""
        self.res.close()
        while self._conns:
            with contextlib.suppress(pymysql.MySQLError):
                self._conns.pop().close()


def _has(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
