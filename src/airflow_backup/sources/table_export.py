"""Incremental table export: rows past the last watermark, as Parquet, one snapshot per run.

URL: ``table+postgresql://user@host/db?table=public.events&watermark=updated_at``, likewise
``table+mysql://…`` and ``table+sqlite:///path/file.db?table=…``. Optional ``key=id`` (restore
replaces earlier versions of a row; needed when the watermark is an ``updated_at``) and
``deleted=is_deleted`` (a soft-delete column: such rows are removed at restore). Without a
soft-delete column, rows deleted at the source stay in restored tables.

The watermark state lives in the repository: each run reads the previous export of the same
URL from the snapshot metadata, so any worker can run the next increment. Restore replays the
increments up to the chosen snapshot (``--as-of``) into the target table.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar, cast

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_backup.errors import (
    BackupError,
    ConfigError,
    DumpFailed,
    RestoreError,
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
)
from airflow_backup.sources.checksum import row_checksum, row_digest
from airflow_backup.sources.column_types import plan_column
from airflow_backup.sources.metadata import (
    ExportFacts,
    SourceDescription,
    ValidationFacts,
    json_int,
)
from airflow_backup.sources.sql import SqlTable, open_sql

__all__ = ["TableExportSource"]

_BATCH = 50_000


@dataclass(slots=True)
class _Progress:
    """What the producer thread has exported so far."""

    rows: int
    checksum: int
    last: object = None  # the watermark of the last row read
    #: Digests of the exported rows whose watermark equals ``last`` (the boundary): the next
    #: export reads from ``>= last`` and skips exactly these, so that a row committed later
    #: with the same watermark value (a second-resolution timestamp) is not missed.
    boundary: list[str] = field(default_factory=list)
    skipped: int = 0


class TableExportSource:
    """One table exported incrementally by a watermark column; see the module docstring."""

    kind: ClassVar[str] = "table"
    #: The URL query options this source reads; any other is an error (a typo must not
    #: silently change what is backed up, or where from).
    options: ClassVar[frozenset[str]] = frozenset(("table", "watermark", "key", "deleted"))

    def __init__(self, url: SourceURL) -> None:
        if not url.scheme.startswith("table+"):
            raise ConfigError(f"not a table export URL: {url.redacted()}")
        self.url = url
        self.table = url.param("table")
        self.watermark = url.param("watermark")
        self.key = url.param("key")
        self.deleted = url.param("deleted")
        self.db: SqlTable | None = None
        self._facts: ExportFacts = {}

    def _open(self, create: bool = False) -> SqlTable:
        if not self.table:
            raise ConfigError("table export URLs need ?table=NAME")
        if self.db is None:
            self.db = open_sql(self.url, create=create)
        return self.db

    # ---- backup --------------------------------------------------------------------------

    def probe(self) -> SourceDescription:
        """Check the table and its columns (describing a table export reads no rows)."""
        return self.describe()

    def describe(self) -> SourceDescription:
        """Check the table and its watermark column exist; record the server version."""
        if not self.watermark:
            raise ConfigError("table export URLs need ?watermark=COLUMN (a monotonic column)")
        db = self._open()
        columns = db.columns(self.table)
        for col in (self.watermark, self.key, self.deleted):
            if col and col not in columns:
                raise ConfigError(f"table {self.table} has no column {col!r}")
        self._columns = columns
        self._plans = db.column_plans(self.table) if db.engine != "sqlite" else []
        if [p.name for p in self._plans] not in ([], columns):
            raise DumpFailed(f"the columns of {self.table} changed while it was described")
        described: SourceDescription = {
            "engine": db.engine, "server_version": db.server_version(),
            "databases": [db.database], "table": self.table, "watermark": self.watermark,
            "key": self.key, "deleted": self.deleted, "columns": columns}
        if self._plans:
            described["column_types"] = {p.name: p.source_type for p in self._plans}
        return described

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Export rows past the previous watermark as one Parquet file."""
        db = self._open()
        since = previous.export.get("watermark_to") if previous else None
        if since is not None and not isinstance(since, dict):
            raise ConfigError(f"unreadable watermark {since!r} in the previous export")
        since_value = db.decode_watermark(since) if since is not None else None
        checksum_start = json_int(previous.export.get("checksum_total")) if previous else 0
        read_fd, write_fd = _pipe()
        seen = previous.export.get("watermark_boundary") if previous else None
        # Rows at the previous watermark already exported (a multiset: equal rows may repeat).
        already = Counter(str(d) for d in seen) if isinstance(seen, list) else Counter()
        state = _Progress(rows=0, checksum=checksum_start, last=since_value,
                          boundary=[str(d) for d in seen] if isinstance(seen, list) else [])
        mark = self._columns.index(self.watermark)
        errors: list[BaseException] = []
        select = db.select_list(self._plans) if self._plans else ""
        schema = pa.schema([(p.name, p.arrow) for p in self._plans]) if self._plans else None

        def produce() -> None:
            try:
                with pa.PythonFile(cast(Any, write_fd), mode="w") as out:
                    writer: pq.ParquetWriter | None = None
                    for rows in db.select_since(self.table, self._columns, self.watermark,
                                                since_value, _BATCH, select):
                        batch = []
                        for row in rows:
                            digest = row_digest(row)
                            if row[mark] == since_value and already[digest] > 0:
                                already[digest] -= 1  # exported by the previous increment
                                state.skipped += 1
                                continue
                            if row[mark] != state.last:
                                state.last, state.boundary = row[mark], []
                            state.boundary.append(digest)
                            batch.append(row)
                        if not batch:
                            continue
                        state.rows += len(batch)
                        if not self.key:
                            state.checksum = row_checksum(batch, state.checksum)
                        rb = _record_batch(self._columns, batch, writer, schema)
                        if writer is None:
                            writer = pq.ParquetWriter(out, rb.schema)
                        writer.write_batch(rb)
                    if writer is None:
                        empty = schema or pa.schema([(c, pa.string()) for c in self._columns])
                        writer = pq.ParquetWriter(out, empty)
                    writer.close()
            except BaseException as exc:
                errors.append(exc)
            finally:
                write_fd.close()

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        path = f"table/{self.table}.parquet"
        try:
            size = sink.add_stream(path, read_fd)
        finally:
            read_fd.close()
            thread.join()
        if errors:
            exc = errors[0]
            raise DumpFailed(f"export of table {self.table} failed: {exc}") from exc
        self._head, self._tail = sink.head(path), sink.tail(path)
        to = state.last
        self._facts = {
            "file": path, "bytes": size, "rows": state.rows,
            "watermark_from": since, "watermark_to": db.encode_watermark(to),
            "watermark_boundary": list(state.boundary),
            "rows_total": db.count_upto(self.table, self.watermark, to, self.deleted),
        }
        if not self.key:
            self._facts["checksum_total"] = str(state.checksum)
        return self._facts

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Read the stored Parquet file's footer and check its row count."""
        data = reader.read_bytes(self._facts["file"])
        try:
            meta = pq.ParquetFile(pa.BufferReader(data)).metadata
        except (pa.ArrowException, OSError) as exc:
            raise ValidationFailed(f"stored export of {self.table} is not Parquet: {exc}") \
                from None
        if meta.num_rows != self._facts["rows"]:
            raise ValidationFailed(f"stored export of {self.table} holds {meta.num_rows} rows, "
                                   f"expected {self._facts['rows']}")
        return {"parquet_rows": meta.num_rows, "row_groups": meta.num_row_groups}

    # ---- restore -------------------------------------------------------------------------

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Replay every increment up to ``stored`` into the target table, then count."""
        chain = [*history, stored]
        starts = [i for i, e in enumerate(chain) if e.export.get("watermark_from") is None]
        chain = chain[starts[-1]:] if starts else chain
        if chain[0].export.get("watermark_from") is not None:
            raise ConfigError("the first increment of this export is missing from the "
                              "repository; cannot replay")
        recorded = stored.source
        key, deleted = str(recorded.get("key") or ""), str(recorded.get("deleted") or "")
        self.table = self.table or str(recorded.get("table", ""))
        db = self._open(create=True)
        exists = db.table_exists(self.table)
        recorded_types = recorded.get("column_types")
        plans = [plan_column(db.engine, str(n), str(t)) for n, t in recorded_types.items()] \
            if isinstance(recorded_types, dict) and recorded.get("engine") == db.engine else []
        # Same engine: the table gets the source's own column types, text values cast back.
        types = {p.name: p.source_type for p in plans} or None
        casts = {p.name: p.source_type for p in plans if p.as_text} \
            if db.engine == "postgresql" else {}
        if exists and not (options.clean or options.force):
            raise RestoreTargetExists(f"table {self.table} already exists at "
                                      f"{self.url.redacted()}: pass --clean to recreate it or "
                                      "--force to add into it")
        created = False
        try:
            for export in chain:
                table = pq.read_table(pa.BufferReader(export.reader.read_bytes(
                    str(export.export["file"]))))
                if not created and (not exists or options.clean):
                    db.create_table(self.table, table.schema, drop=exists, types=types)
                    created = True
                db.apply(self.table, table, key, deleted, casts)
        except Exception as exc:
            if created:
                with contextlib.suppress(Exception):
                    db.drop_table(self.table)
            if isinstance(exc, BackupError):
                raise
            raise RestoreError(f"restore into table {self.table} failed: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
        facts = stored.export
        rows, checksum = db.count_and_checksum(self.table, not key,
                                               db.select_list(plans) if plans else "")
        expected_sum = str(facts.get("checksum_total", ""))
        same_engine = recorded.get("engine", db.engine) == db.engine
        check = TableCheck(self.table, json_int(facts.get("rows_total")),
                           expected_sum if same_engine else "", rows,
                           str(checksum) if same_engine else "")
        details: JSONObject = {"increments": len(chain),
                               "watermark_to": facts.get("watermark_to")}
        if rows > check.rows:
            details["hint"] = ("rows deleted at the source are not captured by incremental "
                               "exports unless a soft-delete column is configured (?deleted=)")
        return RestoreReport(self.url.redacted(), [check], details)

    def cleanup(self) -> None:
        """Close the database connection."""
        if self.db is not None:
            self.db.close()
            self.db = None


def _record_batch(columns: list[str], batch: list[tuple[Any, ...]],
                  writer: pq.ParquetWriter | None, schema: pa.Schema | None = None
                  ) -> pa.RecordBatch:
    data = {c: [row[i] for row in batch] for i, c in enumerate(columns)}
    if schema is not None:  # the column plans' types (PostgreSQL, MariaDB)
        try:
            return pa.RecordBatch.from_pydict(data, schema=schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DumpFailed(f"a value does not fit its column's type: {exc}") from None
    if writer is not None:
        try:
            return pa.RecordBatch.from_pydict(data, schema=writer.schema_arrow)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DumpFailed(f"a column changed type between batches: {exc}") from None
    arrays = []
    for c in columns:
        arr = pa.array(data[c])
        arrays.append(arr.cast(pa.string()) if pa.types.is_null(arr.type) else arr)
    return pa.RecordBatch.from_arrays(arrays, names=columns)


def _pipe() -> tuple[BinaryIO, BinaryIO]:
    import os

    r, w = os.pipe()
    return os.fdopen(r, "rb"), os.fdopen(w, "wb")
