"""The ``airflow_backup`` object of a source snapshot, as types.

A source snapshot carries ``{"format": 1, "source": …, "export": …, "validation": …}`` in its
``airflow_backup`` field: what :meth:`DataSource.describe`, :meth:`DataSource.export` and
:meth:`DataSource.validate` returned. Those results are the TypedDicts below; each key is
written by the sources named beside it, so most keys are optional. In the stored document
``export`` and ``validation`` are plain JSON objects, and are read back as such: a later
export or a restore narrows each value it uses, and front ends only show them.

Read back from a snapshot, a document is what the version that wrote it stored:
:func:`read_metadata` checks its outline, and readers convert values (``str()``, ``int()``)
and tolerate missing keys rather than trust them.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict, cast

from airflow_backup.jsontypes import JSONObject, JSONValue

__all__ = [
    "ExportFacts",
    "SourceDescription",
    "SourceMetadata",
    "TableStats",
    "TocCounts",
    "ValidationFacts",
    "as_json",
    "json_int",
    "json_object",
    "read_metadata",
]


class TableStats(TypedDict):
    """The row count and (where it was computed) checksum of one table."""

    rows: int
    checksum: NotRequired[str]


class SourceDescription(TypedDict, total=False):
    """What :meth:`DataSource.describe` records: the snapshot's ``source`` object.

    ``kind`` and ``url`` (redacted) are put first by the backup; the source adds the rest.
    """

    kind: str
    url: str
    server_version: str  # postgresql, mysql, table
    tool_version: str  # postgresql, mysql, sqlite, object_store
    databases: list[str]  # every source: the database(s), file, table's database or prefix
    tables: dict[str, TableStats]  # postgresql and mysql ("db/table"), sqlite, airflow
    database_properties: dict[str, JSONObject]  # postgresql: per database (pg_database.py)
    stats_version: int  # postgresql: how "tables" was computed (absent: 1)
    tables_at: str  # mysql: "dump snapshot", or why the counts were taken just before it
    format: str  # postgresql: plain, custom or directory
    globals: bool  # postgresql: pg_dumpall --globals-only is stored too
    integrity_check: str  # sqlite
    engine: str  # table: postgresql, mysql or sqlite
    table: str  # table
    watermark: str  # table: the monotonic column
    key: str  # table: the row key ("" for none)
    deleted: str  # table: the soft-delete column ("" for none)
    columns: list[str]  # table
    column_types: dict[str, str]  # table (postgresql, mysql): each column's source type
    objects: int  # object_store
    bytes: int  # object_store
    airflow_version: str  # airflow
    alembic_revision: str  # airflow
    fernet_key_fingerprint: str  # airflow (never the key)
    home: str  # airflow: AIRFLOW_HOME
    database: SourceDescription  # airflow: the metadata database, with its kind and url


class ExportFacts(TypedDict, total=False):
    """What :meth:`DataSource.export` records: the snapshot's ``export`` object."""

    files: dict[str, int]  # postgresql, mysql, sqlite, airflow: stored path -> bytes
    file: str  # table: the Parquet file of this increment
    bytes: int  # table
    rows: int  # table: rows in this increment
    watermark_from: JSONObject | None  # table: where this increment starts (None: all rows)
    watermark_to: JSONObject | None  # table: the last row's watermark (SqlTable encodes it)
    watermark_boundary: list[str]  # table: digests of the rows at watermark_to (re-read next)
    rows_total: int  # table: rows up to watermark_to that are not soft-deleted
    checksum_total: str  # table without a key: running checksum of every increment
    downloaded: int  # object_store
    reused: int  # object_store: unchanged objects taken from the previous backup
    database: ExportFacts  # airflow: the metadata database's export


class TocCounts(TypedDict):
    """Entries of one custom or directory dump's table of contents."""

    toc_entries: int
    table_data_entries: int


class ValidationFacts(TypedDict, total=False):
    """What :meth:`DataSource.validate` records: the snapshot's ``validation`` object."""

    header_and_trailer: list[str]  # postgresql (plain), mysql: the databases checked
    pg_restore_list: dict[str, TocCounts]  # postgresql (custom, directory): per database
    header: str  # sqlite
    parquet_rows: int  # table
    row_groups: int  # table
    objects: int  # object_store
    json: list[str]  # airflow: the exports parsed back
    database: ValidationFacts  # airflow: the metadata database's validation


class SourceMetadata(TypedDict, total=False):
    """The ``airflow_backup`` object of a source snapshot."""

    format: int
    source: SourceDescription
    export: JSONObject
    validation: JSONObject


def as_json(facts: SourceMetadata | ExportFacts | ValidationFacts) -> JSONObject:
    """Return ``facts`` as the JSON object it is (every value type above is JSON)."""
    return cast(JSONObject, facts)


def read_metadata(value: object) -> SourceMetadata | None:
    """Return the ``airflow_backup`` object of a snapshot if it is a source backup's (a JSON
    object with a ``source`` object), else None."""
    if isinstance(value, dict) and isinstance(value.get("source"), dict):
        return cast(SourceMetadata, value)
    return None


def json_object(value: JSONValue) -> JSONObject:
    """Return ``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def json_int(value: JSONValue) -> int:
    """Return a stored number (or a number kept as text) as an int; 0 if there is none."""
    if isinstance(value, int | float | str) and value != "":
        return int(value)
    return 0
