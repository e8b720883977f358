"""PostgreSQL: ``pg_dump`` per database, streamed uncompressed into the repository.

URL: ``postgresql://user@host:5432/db`` (no database: every database that accepts
connections). Query parameters: ``format=plain`` (default: ``pg_dump -Fp`` streamed, no temp
copy; byte-identical for an unchanged database, so it deduplicates completely),
``format=custom`` (``pg_dump -Fc -Z0`` streamed; its header carries the dump time, and it
allows ``pg_restore --list`` and selective restores) or ``format=directory`` with ``jobs=N``
(parallel ``-Fd -j N``; needs a temp
directory), ``globals=true`` (also ``pg_dumpall --globals-only``), ``checksum_max_mb=512``
(tables larger than this get a row count but no checksum). Restore: ``owner=false`` skips
ownership, ``globals=true`` replays roles first.

Row counts and checksums are taken inside the exported snapshot pg_dump uses
(``pg_export_snapshot`` + ``--snapshot``), so they describe exactly the dumped data.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from airflow_backup.errors import (
    ConfigError,
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
    TocCounts,
    ValidationFacts,
)
from airflow_backup.sources.pg_database import (
    apply_properties,
    compare_properties,
    create_database,
    read_properties,
)
from airflow_backup.sources.process import Resources, classify_failure, find_tool

__all__ = ["OUTPUT_SETTINGS", "PostgresSource", "pg_table_stats"]

_SUFFIX = {"plain": ".sql", "custom": ".pgdump", "directory": ".dir"}
_PLAIN_HEAD = b"-- PostgreSQL database dump"
_PLAIN_TAIL = b"-- PostgreSQL database dump complete"
#: Before stats_version 2: each row's text in column order, under the session's settings,
#: and a parent's rows including its inheritance children's.
_LEGACY_CHECKSUM = ("SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))"
                    "::bit(60)::bigint), 0)::text FROM {} t")
#: Each row hashed as its columns' text in column-NAME order, NULL distinct from 'NULL', as
#: UTF-8 bytes: equal for the same data whatever the column order (pg_dump cannot always
#: keep an inheritance child's), the database encoding or (with _FIXED_SETTINGS) the session.
_CHECKSUM = ("SELECT count(*), coalesce(sum(('x' || substr(md5(convert_to(concat_ws("
             "E'\\x1f', {}), 'UTF8')), 1, 15))::bit(60)::bigint), 0)::text FROM ONLY {} t")
#: Settings that change how values print (ALTER DATABASE … SET timezone changes timestamptz):
#: the checks and the table exports' text-carried columns read under these.
OUTPUT_SETTINGS = ("SELECT set_config('timezone', 'UTC', false), "
                   "set_config('datestyle', 'ISO, YMD', false), "
                   "set_config('intervalstyle', 'postgres', false), "
                   "set_config('extra_float_digits', '3', false), "
                   "set_config('bytea_output', 'hex', false), "
                   "set_config('lc_monetary', 'C', false)")
#: The checks also fix search_path, so that regclass and friends print qualified alike.
_FIXED_SETTINGS = OUTPUT_SETTINGS + ", set_config('search_path', 'pg_catalog', false)"
#: What ``stats_version`` a snapshot's table statistics follow (absent: 1, the legacy ones).
STATS_VERSION = 2


def _checksum_query(conn: psycopg.Connection[Any], oid: int, ident: sql.Identifier
                    ) -> sql.Composed:
    columns = [str(r[0]) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attname COLLATE \"C\"", (oid,)).fetchall()]
    if not columns:  # a table with no columns (it can still have rows)
        return sql.SQL(_CHECKSUM).format(sql.SQL("''"), ident)
    values = [sql.SQL("quote_nullable(t.{}::text)").format(sql.Identifier(c))
              for c in columns]
    # A function takes at most 100 arguments and a table up to 1600 columns: join groups
    # of 90, then the groups (quote_nullable is never NULL, so this is the flat join).
    groups = [sql.SQL("concat_ws(E'\\x1f', {})").format(sql.SQL(", ").join(values[i:i + 90]))
              for i in range(0, len(values), 90)]
    return sql.SQL(_CHECKSUM).format(sql.SQL(", ").join(groups), ident)


def pg_table_stats(conn: psycopg.Connection[Any], checksum_max_bytes: int,
                   only: list[str] | None = None, legacy: bool = False
                   ) -> dict[str, TableStats]:
    """Return ``{schema.table: {rows, checksum}}`` for the user tables visible on ``conn``.

    The checksum (``pgsum2:``) is an order-independent sum of per-row MD5 prefixes, each of
    the row's column values by column name, read under fixed output settings (this sets
    them for the session); rows of an inheritance child count for the child only.
    ``legacy`` computes the statistics of snapshots before ``stats_version`` 2 instead.
    Tables over ``checksum_max_bytes`` (or all, if negative) get only a count.
    """
    conn.execute(_FIXED_SETTINGS)
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_total_relation_size(c.oid), c.oid FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' "
        "ORDER BY 1, 2").fetchall()
    out: dict[str, TableStats] = {}
    for schema, name, size, oid in rows:
        key = f"{schema}.{name}"
        if only is not None and key not in only:
            continue
        ident = sql.Identifier(schema, name)
        if checksum_max_bytes >= 0 and size <= checksum_max_bytes:
            if legacy:
                query, prefix = sql.SQL(_LEGACY_CHECKSUM).format(ident), "pgsum:"
            else:
                query, prefix = _checksum_query(conn, oid, ident), "pgsum2:"
            count, checksum = conn.execute(query).fetchone() or (0, "")
            out[key] = {"rows": int(count), "checksum": f"{prefix}{checksum}"}
        else:
            count_query = "SELECT count(*) FROM {}" if legacy else "SELECT count(*) FROM ONLY {}"
            (count,) = conn.execute(sql.SQL(count_query).format(ident)).fetchone() or (0,)
            out[key] = {"rows": int(count)}
    return out


_OWNERSHIP = re.compile(rb"^(?:ALTER \S.* OWNER TO \S+;|(?:GRANT|REVOKE) .*;"
                        rb"|ALTER DEFAULT PRIVILEGES .*;)\r?\n?$")
_DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")


class _PlainDumpFilter:
    """What of a plain dump reaches ``psql --single-transaction``. pg_dump wraps the large
    objects' data in its own ``BEGIN;`` … ``COMMIT;``, whose COMMIT would end psql's single
    transaction early (a later failure would leave the tables and large objects before it
    in the target): those two lines are left out. With ``owner=False``, as
    ``pg_restore --no-owner --no-privileges`` does for the other formats, pg_dump's
    ownership and privilege statements (``ALTER … OWNER TO``, ``GRANT``, ``REVOKE``,
    ``ALTER DEFAULT PRIVILEGES``) are left out too. Never a line of COPY data or of a
    dollar-quoted function body."""

    def __init__(self, owner: bool = True) -> None:
        self._owner = owner
        self._copy = False
        self._dollar: bytes | None = None

    def keep(self, line: bytes) -> bool:
        """Return whether ``line`` goes to psql."""
        if self._copy:
            self._copy = line.rstrip(b"\r\n") != b"\\."
            return True
        if self._dollar is not None:
            if line.count(self._dollar) % 2:
                self._dollar = None
            return True
        if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            self._copy = True
            return True
        tags = _DOLLAR_TAG.findall(line)
        for tag in set(tags):
            if tags.count(tag) % 2:
                self._dollar = tag  # a body opens on this line and goes on
                return True
        if line.rstrip(b"\r\n") in (b"BEGIN;", b"COMMIT;"):
            return False
        return self._owner or not _OWNERSHIP.match(line)


class PostgresSource:
    """A PostgreSQL server or database; see the module docstring for the URL."""

    kind: ClassVar[str] = "postgresql"
    #: The URL query options this source reads; any other is an error (a typo must not
    #: silently change what is backed up, or where from).
    options: ClassVar[frozenset[str]] = frozenset(
        ("format", "jobs", "checksum_max_mb", "passfile", "globals", "owner"))

    def __init__(self, url: SourceURL) -> None:
        if url.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"not a PostgreSQL URL: {url.redacted()}")
        self.url = url
        self.res = Resources()
        self._conns: list[psycopg.Connection[Any]] = []
        self._snapshots: dict[str, str] = {}
        self._databases: list[str] = []
        self._tables: dict[str, TableStats] = {}
        self._tools: dict[str, str] = {}
        self._sink: ExportSink | None = None
        self.format = url.param("format", "plain")
        if self.format not in _SUFFIX:
            raise ConfigError(f"format must be plain, custom or directory, not {self.format!r}")
        try:
            self.jobs = int(url.param("jobs", "2" if self.format == "directory" else "1"))
            self.checksum_max = int(url.param("checksum_max_mb", "512")) * 1024 * 1024
        except ValueError:
            raise ConfigError("jobs and checksum_max_mb must be integers") from None

    # ---- connections -----------------------------------------------------------------------

    def env(self, database: str = "") -> dict[str, str]:
        """Return libpq environment variables for a client program (password included)."""
        env = {"PGHOST": self.url.host or "localhost", "PGCONNECT_TIMEOUT": "10"}
        if self.url.port:
            env["PGPORT"] = str(self.url.port)
        if self.url.username:
            env["PGUSER"] = self.url.username
        if database:
            env["PGDATABASE"] = database
        password = source_password(self.url, "PGPASSWORD")
        if password is not None:
            env["PGPASSWORD"] = password
        if self.url.param("passfile"):
            env["PGPASSFILE"] = os.path.expanduser(self.url.param("passfile"))
        return env

    def connect(self, database: str, autocommit: bool = True) -> psycopg.Connection[Any]:
        """Open a connection (closed by :meth:`cleanup`). Raise a classified SourceError."""
        env = self.env(database)
        params = {key: env[var] for key, var in (
            ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD"),
            ("passfile", "PGPASSFILE")) if var in env}
        try:
            conninfo = make_conninfo(host=env["PGHOST"], dbname=database, connect_timeout=10,
                                     application_name="airflow-backup", **params)
            conn = psycopg.connect(conninfo, autocommit=autocommit)
        except psycopg.Error as exc:
            raise classify_failure(f"PostgreSQL at {self.url.redacted()}", str(exc)) from None
        self._conns.append(conn)
        return conn

    # ---- backup --------------------------------------------------------------------------

    def _databases_on(self, conn: Any) -> list[str]:
        """The database the URL names, else every database that accepts connections."""
        if self.url.database:
            return [self.url.database]
        return [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
            "ORDER BY 1").fetchall()]

    def probe(self) -> SourceDescription:
        """Check the tools and the server (connecting to the database the URL names) without
        reading a table or exporting a snapshot."""
        for name in ("pg_dump", "pg_restore", *(("pg_dumpall",) if self.url.flag("globals")
                                                 else ())):
            find_tool(name)
        conn = self.connect(self.url.database or "postgres")
        server = conn.execute("SHOW server_version").fetchone()
        return {"server_version": server[0] if server else "",
                "databases": self._databases_on(conn)}

    def describe(self) -> SourceDescription:
        """Check tools and server, open one snapshot per database, record counts/checksums."""
        tools = {n: find_tool(n) for n in ("pg_dump", "pg_restore")}
        if self.url.flag("globals"):
            tools["pg_dumpall"] = find_tool("pg_dumpall")
        self._tools = tools
        first = self.connect(self.url.database or "postgres")
        server = first.execute("SHOW server_version").fetchone()
        self._databases = self._databases_on(first)
        properties = {db: read_properties(first, db) for db in self._databases}
        tables: dict[str, TableStats] = {}
        for db in self._databases:
            conn = self.connect(db, autocommit=False)
            try:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                (self._snapshots[db],) = conn.execute("SELECT pg_export_snapshot()"
                                                      ).fetchone() or ("",)
                stats = pg_table_stats(conn, self.checksum_max)
            except psycopg.Error as exc:
                raise classify_failure(f"PostgreSQL database {db}", str(exc)) from None
            tables.update({f"{db}/{k}": v for k, v in stats.items()})
        self._tables = tables
        version = subprocess.run([tools["pg_dump"], "--version"], capture_output=True,
                                 text=True, check=False).stdout.strip()
        return {"server_version": server[0] if server else "", "tool_version": version,
                "databases": list(self._databases), "format": self.format,
                "globals": self.url.flag("globals"), "tables": tables,
                "stats_version": STATS_VERSION, "database_properties": properties}

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Run pg_dump per database (and pg_dumpall for globals) into the sink."""
        files: dict[str, int] = {}
        self._sink = sink
        for db in self._databases:
            argv = [self._tools["pg_dump"], "--snapshot", self._snapshots[db]]
            path = f"postgresql/{db}{_SUFFIX[self.format]}"
            if self.format != "directory":
                fmt = ["-Fp"] if self.format == "plain" else ["-Fc", "-Z0"]
                if self.format == "plain" and self._restrict_key_supported():
                    # pg_dump >= 15.14/16.10/17.6 guards plain dumps with a random psql
                    # \restrict key; a per-repository key keeps unchanged dumps identical.
                    fmt.append(f"--restrict-key={sink.stable_token('pg-restrict:' + db)}")
                child = self.res.start([*argv, *fmt], f"pg_dump of {db}", env=self.env(db))
                files[path] = sink.add_stream(path, child.stdout)
                child.check()
            else:
                tmp = self.res.temp_dir("pgdir")
                out = os.path.join(tmp, "dump")
                child = self.res.start([*argv, "-Fd", "-Z0", "-j", str(self.jobs), "-f", out],
                                       f"pg_dump of {db}", env=self.env(db))
                child.check()
                files[path] = sink.add_directory(path, out)
                self.res.remove(tmp)
        if self.url.flag("globals"):
            child = self.res.start([self._tools["pg_dumpall"], "--globals-only"],
                                   "pg_dumpall --globals-only", env=self.env("postgres"))
            files["postgresql/globals.sql"] = sink.add_stream("postgresql/globals.sql",
                                                              child.stdout)
            child.check()
        return {"files": files}

    def _restrict_key_supported(self) -> bool:
        help_text = subprocess.run([self._tools["pg_dump"], "--help"], capture_output=True,
                                   text=True, check=False).stdout
        return "--restrict-key" in help_text

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Plain dumps: check pg_dump's header and completion trailer. Custom and directory
        dumps: read the stored table of contents back with pg_restore --list."""
        facts: dict[str, TocCounts] = {}
        if self.format == "plain":
            assert self._sink is not None
            for db in self._databases:
                path = f"postgresql/{db}.sql"
                if _PLAIN_HEAD not in self._sink.head(path)[:4096]:
                    raise ValidationFailed(f"stored dump of {db} lacks the pg_dump header")
                if _PLAIN_TAIL not in self._sink.tail(path)[-4096:]:
                    raise ValidationFailed(f"stored dump of {db} is truncated (no trailer)")
            return {"header_and_trailer": list(self._databases)}
        for db in self._databases:
            toc = self._list(reader, db)
            entries = [ln for ln in toc.splitlines() if ln and not ln.startswith(";")]
            data = {ln.split(" TABLE DATA ", 1)[1].rsplit(" ", 1)[0].replace(" ", ".", 1)
                    for ln in entries if " TABLE DATA " in ln}
            expected = {k.split("/", 1)[1] for k in self._tables_of(db)}
            missing = sorted(expected - data)
            if missing:
                raise ValidationFailed(f"stored dump of {db} lacks data for table(s) "
                                       f"{', '.join(missing[:5])}")
            facts[db] = {"toc_entries": len(entries), "table_data_entries": len(data)}
        return {"pg_restore_list": facts}

    def _tables_of(self, db: str) -> list[str]:
        return [k for k in self._tables if k.startswith(db + "/")]

    def _list(self, reader: SnapshotReader, db: str) -> str:
        tmp = self.res.temp_dir("pglist")
        listing = os.path.join(tmp, "toc.txt")
        with open(listing, "wb") as out:
            if self.format == "custom":
                # pg_restore stops reading once it has the table of contents.
                self.res.feed([self._tools["pg_restore"], "--list"],
                              f"pg_restore --list of {db}", reader,
                              f"postgresql/{db}.pgdump", stdout=out, error=ValidationFailed)
            else:
                os.makedirs(os.path.join(tmp, "d"))
                with open(os.path.join(tmp, "d", "toc.dat"), "wb") as toc:
                    reader.copy_to(f"postgresql/{db}.dir/toc.dat", toc)
                self.res.start([self._tools["pg_restore"], "--list", os.path.join(tmp, "d")],
                               f"pg_restore --list of {db}", stdout=out
                               ).check(ValidationFailed)
        with open(listing, encoding="utf-8", errors="replace") as f:
            return f.read()

    # ---- restore -------------------------------------------------------------------------

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """pg_restore into the target database (created if missing), then compare."""
        self._tools = {n: find_tool(n) for n in ("pg_restore", "psql")}
        source_db = options.source_database(stored)
        target_db = self.url.database or source_db
        admin = self.connect("postgres")
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               (target_db,)).fetchone() is not None
        if exists and not (options.clean or options.force):
            raise RestoreTargetExists(
                f"database {target_db!r} already exists at {self.url.redacted()}: pass "
                "--clean to replace its objects or --force to restore into it")
        if self.url.flag("globals") and "postgresql/globals.sql" in stored.reader.files():
            self._psql_globals(stored.reader)
        plain = f"postgresql/{source_db}.sql" in stored.reader.files(f"postgresql/{source_db}.sql")
        recorded = stored.source.get("database_properties") or {}
        props = recorded.get(source_db) if isinstance(recorded, dict) else None
        props = props if isinstance(props, dict) else {}
        owner = self.url.param("owner").lower() not in ("false", "0", "no", "off")
        # Into an existing database with --clean, the dump is replayed into a new staging
        # database, checked there, and swapped in only then: a failed replay or check
        # leaves the target as it was. --force restores into the existing database in one
        # transaction (all formats; a directory dump then without -j).
        staged = exists and options.clean
        into = f"{target_db[:40]}_abk_restore_{os.getpid()}" if staged else target_db
        fresh = staged or not exists
        notes = create_database(admin, into, props) if fresh else []
        try:
            if plain:
                self._psql(stored.reader, f"postgresql/{source_db}.sql", into)
            else:
                self._pg_restore(stored.reader, source_db, into, atomic=not fresh)
            if fresh:
                # After the replay: a setting such as default_transaction_read_only must
                # not apply to it.
                notes += apply_properties(admin, into, props, owner)
            report = self._compare(stored, source_db, into, target_db, not exists,
                                   props if fresh else {}, notes, owner)
            bad = report.mismatches()
            if bad and fresh:
                raise RestoreMismatch(
                    f"the restored copy of {target_db} is not the backup: "
                    f"{mismatch_summary(bad)}" + ("; target left as it was" if exists else ""))
        except BaseException:
            if fresh:
                self._drop(admin, into)
            raise
        if staged:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(target_db)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(into), sql.Identifier(target_db)))
        return report

    def _compare(self, stored: StoredExport, source_db: str, into: str, target_db: str,
                 created: bool, props: JSONObject | None = None,
                 notes: list[str] | None = None, owner: bool = True) -> RestoreReport:
        """Compare the tables restored into the database ``into`` (and, where the restore
        made it, its properties) with the records; the report names ``target_db``."""
        recorded = {t.split("/", 1)[1]: (rows, checksum) for t, rows, checksum
                    in iter_tables(stored.source) if t.startswith(source_db + "/")}
        conn = self.connect(into)
        try:
            actual = pg_table_stats(conn, -1 if not any(c for _, c in recorded.values())
                                    else 1 << 62, list(recorded),
                                    legacy=stored.source.get("stats_version") != STATS_VERSION)
        finally:
            # A staging database is renamed next: no connection may stay open on it.
            self._conns.remove(conn)
            conn.close()
        checks = []
        for t, (rows, checksum) in sorted(recorded.items()):
            got_rows, got_checksum = restored_stats(actual, t)
            checks.append(TableCheck(t, rows, checksum, got_rows,
                                     got_checksum if checksum else ""))
        details: JSONObject = {"database": target_db, "source_database": source_db,
                               "created": created}
        notes = list(notes or [])
        if props:
            admin = self.connect("postgres")
            notes += [d for d in compare_properties(admin, into, props, owner)
                      if not any(d.split(":", 1)[0] in n for n in notes)]
        if notes:
            details["notes"] = list(notes)
        return RestoreReport(self.url.with_database(target_db).redacted(), checks, details)

    def _pg_restore(self, reader: SnapshotReader, source_db: str, target_db: str,
                    atomic: bool) -> None:
        """Restore a custom or directory dump; ``atomic``: in one transaction even for a
        directory dump (which then gives up -j)."""
        argv = [self._tools["pg_restore"], "--exit-on-error", "-d", target_db]
        if self.url.param("owner").lower() in ("false", "0", "no", "off"):
            argv += ["--no-owner", "--no-privileges"]
        what = f"pg_restore into {target_db}"
        if f"postgresql/{source_db}.pgdump" in reader.files(f"postgresql/{source_db}.pgdump"):
            self.res.feed([*argv, "--single-transaction"], what, reader,
                          f"postgresql/{source_db}.pgdump", env=self.env(target_db))
            return
        tmp = self.res.temp_dir("pgrestore")
        reader.extract(f"postgresql/{source_db}.dir", tmp)
        parallel = ["--single-transaction"] if atomic else ["-j", str(self.jobs)]
        child = self.res.start([*argv, *parallel, "-Fd",
                                os.path.join(tmp, f"{source_db}.dir")], what,
                               env=self.env(target_db), stdout=subprocess.DEVNULL)
        child.check(RestoreError)

    def _psql(self, reader: SnapshotReader, path: str, target_db: str) -> None:
        keep = _PlainDumpFilter(
            self.url.param("owner").lower() not in ("false", "0", "no", "off")).keep
        self.res.feed([self._tools["psql"], "-X", "-q", "-v", "ON_ERROR_STOP=1",
                       "--single-transaction", "-f", "-"], f"psql into {target_db}", reader,
                      path, env=self.env(target_db), keep_line=keep)

    def _psql_globals(self, reader: SnapshotReader) -> None:
        # Roles that exist already make their CREATE fail; the rest must still run.
        self.res.feed([self._tools["psql"], "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"],
                      "psql (globals)", reader, "postgresql/globals.sql",
                      env=self.env("postgres"))

    def _drop(self, admin: psycopg.Connection[Any], name: str) -> None:
        with contextlib.suppress(psycopg.Error):  # the original error matters more
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def cleanup(self) -> None:
        """Close connections (ending exported snapshots), kill children, remove temp dirs."""
        self.res.close()
        while self._conns:
            with contextlib.suppress(psycopg.Error):
                self._conns.pop().close()
