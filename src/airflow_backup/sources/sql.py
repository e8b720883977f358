"""A small SQL layer over PostgreSQL, MariaDB/MySQL and SQLite for table exports.

Connections come from the database sources (same password rules and error messages);
identifiers are quoted per engine and values always travel as bound parameters.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from airflow_backup.errors import ConfigError, SourceUnavailable
from airflow_backup.jsontypes import JSONObject
from airflow_backup.sources.base import SourceURL
from airflow_backup.sources.checksum import row_checksum
from airflow_backup.sources.column_types import ColumnPlan, plan_column

__all__ = ["SqlTable", "open_sql"]



class SqlTable:
    """One database connection with the handful of statements a table export needs."""

    def __init__(self, engine: str, conn: Any, database: str, owner: Any = None) -> None:
        self.engine = engine
        self.conn = conn
        self.database = database
        self._owner = owner  # the source holding the connection (closes it)
        self.mark = "?" if engine == "sqlite" else "%s"

    # ---- helpers -------------------------------------------------------------------------

    def quote(self, name: str) -> str:
        """Quote a (possibly schema-qualified) identifier for this engine."""
        q = "`" if self.engine == "mysql" else '"'
        return ".".join(q + p.replace(q, q + q) + q for p in name.split("."))

    def _cursor(self) -> Any:
        return self.conn.cursor()

    def _all(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cur = self._cursor()
        try:
            cur.execute(query, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def server_version(self) -> str:
        """Return the server (or library) version."""
        if self.engine == "sqlite":
            return f"sqlite {sqlite3.sqlite_version}"
        query = "SHOW server_version" if self.engine == "postgresql" else "SELECT VERSION()"
        return str(self._all(query)[0][0])

    def columns(self, table: str) -> list[str]:
        """Return the column names of ``table``. Raise ConfigError if it does not exist."""
        cur = self._cursor()
        try:
            cur.execute(f"SELECT * FROM {self.quote(table)} WHERE 1 = 0")
            return [str(d[0]) for d in cur.description]
        except Exception as exc:
            self.rollback()
            raise ConfigError(f"cannot read table {table}: {str(exc).splitlines()[0]}") \
                from None
        finally:
            cur.close()

    def column_plans(self, table: str) -> list[ColumnPlan]:
        """Return how each column of ``table`` is carried (see :mod:`.column_types`)."""
        if self.engine == "postgresql":
            rows = self._all("SELECT attname, format_type(atttypid, atttypmod) FROM "
                             "pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND "
                             "NOT attisdropped ORDER BY attnum", (self.quote(table),))
        elif self.engine == "mysql":
            schema, _, name = table.rpartition(".")
            rows = self._all("SELECT column_name, column_type FROM information_schema.columns "
                             "WHERE table_schema = COALESCE(NULLIF(%s, ''), DATABASE()) AND "
                             "table_name = %s ORDER BY ordinal_position", (schema, name))
        else:
            rows = [(r[1], r[2]) for r in self._all(
                f"PRAGMA table_info({self.quote(table)})")]
        self.rollback()
        return [plan_column(self.engine, str(n), str(t)) for n, t in rows]

    def select_list(self, plans: list[ColumnPlan]) -> str:
        """Return the SELECT list reading each column as its plan says (text or native)."""
        out = []
        for p in plans:
            q = self.quote(p.name)
            if not p.as_text:
                out.append(q)
            elif self.engine == "postgresql":
                out.append(f"{q}::text")
            else:
                out.append(f"CAST({q} AS CHAR)")
        return ", ".join(out)

    def table_exists(self, table: str) -> bool:
        """Return whether ``table`` exists."""
        try:
            self.columns(table)
        except ConfigError:
            return False
        return True

    def rollback(self) -> None:
        """End the current transaction (after an error)."""
        if self.engine != "mysql" or not self.conn.get_autocommit():
            self.conn.rollback()

    # ---- reading -------------------------------------------------------------------------

    def select_since(self, table: str, columns: list[str], watermark: str, since: object,
                     batch: int, select: str = "") -> Iterator[list[tuple[Any, ...]]]:
        """Yield batches of rows with ``watermark >= since`` (all rows if None), in order:
        rows at ``since`` itself are read again, because one committed after the previous
        export may carry the same value (the caller skips those it already has).
        ``select`` is the SELECT list (default: the columns as they are)."""
        cols = select or ", ".join(self.quote(c) for c in columns)
        query = f"SELECT {cols} FROM {self.quote(table)}"
        params: tuple[Any, ...] = ()
        if since is not None:
            query += f" WHERE {self.quote(watermark)} >= {self.mark}"
            params = (since,)
        query += f" ORDER BY {self.quote(watermark)}"
        if self.engine == "postgresql":
            cur = self.conn.cursor(name="airflow_backup_export")
        elif self.engine == "mysql":
            import pymysql.cursors

            cur = self.conn.cursor(pymysql.cursors.SSCursor)
        else:
            cur = self.conn.cursor()
        try:
            cur.execute(query, params)
            while rows := cur.fetchmany(batch):
                yield [tuple(r) for r in rows]
        finally:
            cur.close()
            self.rollback()

    def count_upto(self, table: str, watermark: str, upto: object, deleted: str) -> int:
        """Return the rows with ``watermark <= upto`` that are not soft-deleted."""
        if upto is None:
            return 0
        query = (f"SELECT COUNT(*) FROM {self.quote(table)} "
                 f"WHERE {self.quote(watermark)} <= {self.mark}")
        if deleted:
            query += " AND " + self._not_deleted(deleted)
        count = int(self._all(query, (upto,))[0][0])
        self.rollback()
        return count

    def _not_deleted(self, column: str) -> str:
        if self.engine == "postgresql":
            return f"NOT COALESCE({self.quote(column)}, false)"
        return f"COALESCE({self.quote(column)}, 0) = 0"

    def count_and_checksum(self, table: str, with_checksum: bool, select: str = ""
                           ) -> tuple[int, int]:
        """Return the row count and (if asked) the order-independent checksum of ``table``
        (its rows read through the SELECT list ``select``, default ``*``)."""
        cur = self._cursor()
        total = count = 0
        try:
            cur.execute(f"SELECT {select or '*'} FROM {self.quote(table)}")
            while rows := cur.fetchmany(10_000):
                count += len(rows)
                if with_checksum:
                    total = row_checksum(list(rows), total)
        finally:
            cur.close()
        self.rollback()
        return count, total

    # ---- watermarks ----------------------------------------------------------------------

    @staticmethod
    def encode_watermark(value: object) -> JSONObject | None:
        """Return the stored form of a watermark value: its type and its text."""
        if value is None:
            return None
        for kind, types in (("int", (int,)), ("datetime", (datetime,)), ("date", (date,)),
                            ("decimal", (Decimal,)), ("float", (float,))):
            if isinstance(value, types) and not isinstance(value, bool):
                return {"type": kind, "value": value.isoformat()
                        if isinstance(value, date) else str(value)}
        return {"type": "str", "value": str(value)}

    @staticmethod
    def decode_watermark(obj: JSONObject) -> object:
        """Invert :meth:`encode_watermark`."""
        kind, value = obj.get("type"), str(obj.get("value"))
        converters: dict[str, Callable[[str], object]] = {
            "int": int, "datetime": datetime.fromisoformat, "date": date.fromisoformat,
            "decimal": Decimal, "float": float, "str": str}
        return converters.get(str(kind), str)(value)

    # ---- writing -------------------------------------------------------------------------

    def create_table(self, table: str, schema: pa.Schema, drop: bool,
                     types: dict[str, str] | None = None) -> None:
        """Create ``table`` with the source's column ``types`` (same engine), else with
        columns typed from an Arrow schema; drop it first if asked."""
        cur = self._cursor()
        try:
            if drop:
                cur.execute(f"DROP TABLE {self.quote(table)}")
            cols = ", ".join(f"{self.quote(f.name)} "
                             f"{types[f.name] if types else self._sql_type(f.type)}"
                             for f in schema)
            cur.execute(f"CREATE TABLE {self.quote(table)} ({cols})")
        finally:
            cur.close()
        self.conn.commit()

    def _sql_type(self, t: pa.DataType) -> str:
        e = self.engine
        if pa.types.is_boolean(t):
            return "BOOLEAN"
        if pa.types.is_integer(t):
            return "BIGINT" if e != "sqlite" else "INTEGER"
        if pa.types.is_floating(t):
            return {"postgresql": "DOUBLE PRECISION", "mysql": "DOUBLE"}.get(e, "REAL")
        if pa.types.is_decimal(t):
            return f"NUMERIC({t.precision}, {t.scale})"
        if pa.types.is_timestamp(t):
            if e == "postgresql":
                return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
            return "DATETIME(6)" if e == "mysql" else "TIMESTAMP"
        if pa.types.is_date(t):
            return "DATE"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return {"postgresql": "BYTEA", "mysql": "LONGBLOB"}.get(e, "BLOB")
        return "LONGTEXT" if e == "mysql" else "TEXT"

    def apply(self, table: str, data: pa.Table, key: str, deleted: str,
              casts: dict[str, str] | None = None) -> None:
        """Apply one increment: replace rows with the same ``key``, drop soft-deleted rows.
        ``casts``: the PostgreSQL type each text-carried column's values are cast to."""
        rows = data.to_pylist()
        names = list(data.column_names)
        casts = casts or {}

        def mark(name: str) -> str:
            return f"{self.mark}::{casts[name]}" if name in casts else self.mark

        cur = self._cursor()
        try:
            if key and rows:
                cur.executemany(f"DELETE FROM {self.quote(table)} WHERE "
                                f"{self.quote(key)} = {mark(key)}", [(r[key],) for r in rows])
            keep = [r for r in rows if not (deleted and r.get(deleted))]
            if keep:
                marks = ", ".join(mark(n) for n in names)
                cols = ", ".join(self.quote(n) for n in names)
                conv = _sqlite_value if self.engine == "sqlite" else _same
                cur.executemany(f"INSERT INTO {self.quote(table)} ({cols}) VALUES ({marks})",
                                [tuple(conv(r[n]) for n in names) for r in keep])
        finally:
            cur.close()
        self.conn.commit()

    def drop_table(self, table: str) -> None:
        """Drop ``table`` (after a failed restore that created it)."""
        self.rollback()
        cur = self._cursor()
        try:
            cur.execute(f"DROP TABLE IF EXISTS {self.quote(table)}")
        finally:
            cur.close()
        self.conn.commit()

    def close(self) -> None:
        """Close the connection."""
        if self._owner is not None:
            self._owner.cleanup()
        else:
            self.conn.close()


def _same(value: Any) -> Any:
    return value


def _sqlite_value(value: Any) -> Any:
    """SQLite stores no decimals or datetimes: keep them as exact text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return value


def open_sql(url: SourceURL, create: bool = False) -> SqlTable:
    """Connect to the database of a ``table+ENGINE://`` URL (``create``: a missing SQLite
    file is created, for restores)."""
    engine = url.scheme.split("+", 1)[1]
    inner = SourceURL(engine, url.username, url.password, url.host, url.port, url.path, ())
    if engine == "postgresql":
        from airflow_backup.sources.postgres import OUTPUT_SETTINGS, PostgresSource

        pg = PostgresSource(inner)
        conn = pg.connect(inner.database or "postgres", autocommit=False)
        # Text-carried values (interval, money, timetz …) print the same in every session.
        conn.execute(OUTPUT_SETTINGS)
        conn.commit()
        return SqlTable("postgresql", conn, inner.database, pg)
    if engine == "mysql":
        from airflow_backup.sources.mysql import MySQLSource

        my = MySQLSource(inner)
        conn = my.connect(inner.database or None)
        conn.autocommit(False)
        return SqlTable("mysql", conn, inner.database, my)
    if engine == "sqlite":
        if not create and not os.path.isfile(url.path):
            raise SourceUnavailable(f"SQLite database {url.path}: no such file")
        return SqlTable("sqlite", sqlite3.connect(url.path), os.path.basename(url.path))
    raise ConfigError(f"table exports support postgresql, mysql and sqlite, not {engine}")
