"""How each column of a table export is read, stored in Parquet and written back.

A column whose values Arrow holds exactly (integers, floats, booleans, strings, binary,
decimals of declared precision up to 38, dates and timestamps) is stored with that Arrow
type. Any other (PostgreSQL interval, json/jsonb, uuid, inet, money, arrays, xml, ranges,
enums, timetz, unconstrained numeric …; MariaDB TIME, unsigned BIGINT, wide DECIMAL …) is
read as the server's own text form and stored as a string, which the server parses back
exactly: ``-3 mons`` stays ``-3 mons``, ``{"a":1}`` stays ``{"a":1}``.

The source column types are recorded with the export; a restore into the same engine
recreates the table with them (and casts each text value to its type), so a uuid comes back
a uuid, not text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

__all__ = ["ColumnPlan", "plan_column"]


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """One column: its name, source type, Arrow type, and whether it travels as text."""

    name: str
    source_type: str
    arrow: pa.DataType
    as_text: bool


_PG_NATIVE: dict[str, pa.DataType] = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(),
    "real": pa.float32(), "double precision": pa.float64(), "boolean": pa.bool_(),
    "text": pa.string(), "bytea": pa.binary(), "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "time without time zone": pa.time64("us"),
}
_PG_STRING = re.compile(r"^(character varying|character|varchar|char|bpchar|name)(\(\d+\))?$")
_DECIMAL = re.compile(r"^(?:numeric|decimal)\((\d+),\s*(\d+)\)(?: unsigned)?$")
_MY_INT = {"tinyint": pa.int16(), "smallint": pa.int32(), "mediumint": pa.int32(),
           "int": pa.int64(), "bigint": pa.int64(), "year": pa.int16()}
_MY_STRING = re.compile(r"^(var)?char\(\d+\)|^(tiny|medium|long)?text$|^enum\(|^set\(|^json$")
_MY_BINARY = re.compile(r"^(var)?binary\(\d+\)|^(tiny|medium|long)?blob$|^bit\(\d+\)$")


def plan_column(engine: str, name: str, source_type: str) -> ColumnPlan:
    """Return how to carry column ``name`` of type ``source_type`` (as the server names it:
    PostgreSQL's format_type, MariaDB's COLUMN_TYPE, SQLite's declared type)."""
    t = source_type.strip().lower()
    native: pa.DataType | None
    if engine == "postgresql":
        native = _PG_NATIVE.get(t)
        if native is None and _PG_STRING.match(t):
            native = pa.string()
        if native is None and (m := _DECIMAL.match(t)) and int(m[1]) <= 38:
            native = pa.decimal128(int(m[1]), int(m[2]))
        return ColumnPlan(name, source_type, native or pa.string(), native is None)
    if engine == "mysql":
        base = re.sub(r"\(\d+\)", "", t).replace(" zerofill", "")
        if base.endswith(" unsigned"):
            base = base.removesuffix(" unsigned")
            # An unsigned BIGINT does not fit int64: it travels as text.
            native = None if base == "bigint" else pa.int64()
        else:
            native = _MY_INT.get(base)
        if native is None and (t in ("float", "double") or t.startswith(("float(", "double("))):
            native = pa.float32() if t.startswith("float") else pa.float64()
        if native is None and (m := _DECIMAL.match(t)) and int(m[1]) <= 38:
            native = pa.decimal128(int(m[1]), int(m[2]))
        if native is None and _MY_STRING.match(t):
            native = pa.string()
        if native is None and _MY_BINARY.match(t):
            native = pa.binary()
        if native is None and t == "date":
            native = pa.date32()
        if native is None and t.startswith(("datetime", "timestamp")):
            native = pa.timestamp("us")
        return ColumnPlan(name, source_type, native or pa.string(), native is None)
    # SQLite keeps values, not types: let Arrow infer, as before.
    return ColumnPlan(name, source_type, pa.null(), False)
