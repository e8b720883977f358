"""Incremental table exports keep every column type, through the CLI against the real servers:
a matrix of PostgreSQL's and MariaDB's built-in types, with NULLs, extremes and odd values,
in two increments whose values differ in shape (numeric scale, jsonb arrays vs objects),
restores into a table of the same column types holding the same values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support.cli import ok_stdout as _ok
from support.cli import repo, run_cli
from support.sources import PG_BASE, maria, pg, unique

__all__ = ["maria", "pg", "repo"]  # fixtures

#: column -> (type, first increment's two values, second increment's value), as SQL literals
PG_MATRIX: dict[str, tuple[str, tuple[str, str], str]] = {
    "c_int2": ("smallint", ("-32768", "32767"), "0"),
    "c_int4": ("integer", ("-2147483648", "2147483647"), "7"),
    "c_int8": ("bigint", ("-9223372036854775808", "9223372036854775807"), "-1"),
    "c_num": ("numeric(12,3)", ("-999999999.999", "0.001"), "5"),
    "c_num38": ("numeric(38,10)", ("1234567890123456789012345678.0123456789", "0"), "-0.5"),
    "c_num_wide": ("numeric(50,5)", ("123456789012345678901234567890123456789012345.12345",
                                     "0"), "1"),
    "c_num_free": ("numeric", ("1.5", "'NaN'"), "123456789012345678901234567890.000000001"),
    "c_real": ("real", ("3.4e38", "'NaN'"), "'-Infinity'"),
    "c_float8": ("double precision", ("1.7976931348623157e308", "5e-324"), "0.1"),
    "c_bool": ("boolean", ("true", "false"), "true"),
    "c_text": ("text", ("''", "E'emoji \\U0001F600 tab\\t quote'' nul-free'"), "'x'"),
    "c_varchar": ("varchar(10)", ("'abc'", "'é'"), "''"),
    "c_char": ("char(5)", ("'ab'", "'abcde'"), "'z'"),
    "c_bytea": ("bytea", ("'\\x00ff10'", "''"), "'\\xdeadbeef'"),
    "c_date": ("date", ("'0001-01-01'", "'9999-12-31'"), "'2024-02-29'"),
    "c_ts": ("timestamp", ("'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'"),
             "'2024-03-10 02:30:00'"),
    "c_tstz": ("timestamptz", ("'2024-03-10 02:30:00+00'", "'1970-01-01 00:00:00+05:30'"),
               "'2000-01-01 00:00:00.000001-08'"),
    "c_time": ("time", ("'00:00:00'", "'23:59:59.999999'"), "'12:00'"),
    "c_timetz": ("timetz", ("'12:00:00+05:30'", "'00:00:00-12'"), "'01:02:03+00'"),
    "c_interval": ("interval", ("'-3 mons'", "'1 year 2 mons 3 days 04:05:06.789'"),
                   "'-1 day +02:00'"),
    "c_json": ("json", ("'{\"b\": 1,  \"a\": [1, 2]}'", "'[]'"), "'\"s\"'"),
    "c_jsonb": ("jsonb", ("'{\"a\": 1}'", "'[1, {\"x\": null}]'"), "'{\"b\": [true]}'"),
    "c_uuid": ("uuid", ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                        "'00000000-0000-0000-0000-000000000000'"),
               "'ffffffff-ffff-ffff-ffff-ffffffffffff'"),
    "c_inet": ("inet", ("'192.168.0.1/24'", "'::1'"), "'10.1.2.3'"),
    "c_cidr": ("cidr", ("'10.0.0.0/8'", "'2001:db8::/32'"), "'0.0.0.0/0'"),
    "c_macaddr": ("macaddr", ("'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'"),
                  "'00:00:00:00:00:00'"),
    "c_money": ("money", ("'12.34'", "'-92233720368547758.08'"), "'0'"),
    "c_intarr": ("integer[]", ("'{1,NULL,3}'", "'{}'"), "'{{1,2},{3,4}}'"),
    "c_textarr": ("text[]", ("'{\"a b\",\"c,d\"}'", "'{NULL}'"), "'{\"\\\"q\\\"\"}'"),
    "c_xml": ("xml", ("'<a x=\"1\">t</a>'", "'plain'"), "'<b/>'"),
    "c_bit": ("bit(4)", ("B'1010'", "B'0000'"), "B'1111'"),
    "c_varbit": ("bit varying", ("B'1'", "B''"), "B'101'"),
    "c_point": ("point", ("'(1.5,2)'", "'(-1e-300,1e300)'"), "'(0,0)'"),
    "c_box": ("box", ("'(1,1),(0,0)'", "'(2,2),(2,2)'"), "'(3,4),(1,2)'"),
    "c_range": ("int4range", ("'[1,10)'", "'empty'"), "'(,5]'"),
    "c_tsrange": ("tsrange", ("'[2024-01-01,)'", "'(,)'"), "'[2024-01-01,2024-01-02]'"),
    "c_tsvector": ("tsvector", ("'a:1 b:2'", "''"), "'fat:2,4 cat:3'"),
    "c_oid": ("oid", ("4294967295", "0"), "1"),
    "c_enum": ("mood", ("'sad'", "'ok'"), "'ok'"),
    "c_circle": ("circle", ("'<(1,2),3>'", "'<(0,0),0>'"), "'<(-1,-1),0.5>'"),
    "c_line": ("line", ("'{1,-1,0}'", "'{0,1,2}'"), "'{1,0,-3}'"),
    "c_lseg": ("lseg", ("'[(0,0),(1,1)]'", "'[(1,2),(3,4)]'"), "'[(0,0),(0,0)]'"),
    "c_path": ("path", ("'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1))'"), "'[(5,5)]'"),
    "c_polygon": ("polygon", ("'((0,0),(1,0),(1,1))'", "'((0,0))'"), "'((1,1),(2,2),(3,1))'"),
    "c_lsn": ("pg_lsn", ("'0/0'", "'FFFFFFFF/FFFFFFFF'"), "'16/B374D848'"),
    "c_tsquery": ("tsquery", ("'fat & (rat | cat)'", "'!a'"), "'x <-> y'"),
    "c_jsonpath": ("jsonpath", ("'$.a[*] ? (@ > 1)'", "'strict $'"), "'$.\"key\"'"),
    "c_macaddr8": ("macaddr8", ("'08:00:2b:01:02:03:04:05'", "'00:00:00:00:00:00:00:00'"),
                   "'ff:ff:ff:ff:ff:ff:ff:ff'"),
    "c_int8range": ("int8range", ("'[-9223372036854775808,0)'", "'empty'"), "'[1,2]'"),
    "c_numrange": ("numrange", ("'(0.5,1.5]'", "'(,)'"), "'[1e-20,1]'"),
    "c_daterange": ("daterange", ("'[2024-01-01,2024-02-01)'", "'empty'"), "'(,2000-01-01)'"),
    "c_tstzrange": ("tstzrange", ("'[2024-01-01 00:00+00,2024-01-02 00:00+00)'", "'(,)'"),
                    "'empty'"),
    "c_multirange": ("int4multirange", ("'{[1,3), [5,7)}'", "'{}'"), "'{(,0)}'"),
    "c_qchar": ('"char"', ("'a'", "''"), "'z'"),
    "c_name": ("name", ("'pg_class'", "''"), "'n'"),
    "c_varchar_free": ("character varying", ("'no length limit'", "''"), "'v'"),
    "c_time3": ("time(3) without time zone", ("'23:59:59.999'", "'00:00:00'"), "'12:34:56.789'"),
    "c_ts0": ("timestamp(0) without time zone", ("'2024-01-01 00:00:01'", "'0001-01-01'"),
              "'1999-12-31 23:59:59'"),
    "c_ival_ds": ("interval day to second", ("'1 day 02:03:04.5'", "'-00:00:01'"), "'0'"),
    "c_varbit5": ("bit varying(5)", ("B'10101'", "B''"), "B'1'"),
    "c_snapshot": ("txid_snapshot", ("'10:20:10,14,15'", "'1:1:'"), "'5:9:6'"),
    "c_regclass": ("regclass", ("'pg_class'", "'pg_namespace'"), "'pg_type'"),
    "c_floatarr": ("double precision[]", ("'{1.5,NaN,-Infinity}'", "'{}'"), "'{0.1}'"),
    "c_jsonbarr": ("jsonb[]", ("ARRAY['{\"a\":1}'::jsonb, '[2]']", "'{}'"), "'{}'"),
    "c_uuidarr": ("uuid[]", ("ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]", "'{}'"),
                  "'{}'"),
}

#: column -> (COLUMN_TYPE, first increment's two values, second increment's value)
MY_MATRIX: dict[str, tuple[str, tuple[str, str], str]] = {
    "c_tiny": ("tinyint(4)", ("-128", "127"), "0"),
    "c_utiny": ("tinyint(3) unsigned", ("0", "255"), "1"),
    "c_small": ("smallint(6)", ("-32768", "32767"), "2"),
    "c_medium": ("mediumint(9)", ("-8388608", "8388607"), "3"),
    "c_int": ("int(11)", ("-2147483648", "2147483647"), "4"),
    "c_uint": ("int(10) unsigned", ("0", "4294967295"), "5"),
    "c_big": ("bigint(20)", ("-9223372036854775808", "9223372036854775807"), "6"),
    "c_ubig": ("bigint(20) unsigned", ("0", "18446744073709551615"), "7"),
    "c_dec": ("decimal(10,2)", ("-99999999.99", "0.01"), "1.5"),
    "c_dec_wide": ("decimal(65,30)",
                   ("12345678901234567890123456789012345.123456789012345678901234567890", "0"),
                   "-1"),
    "c_float": ("float", ("3.4e38", "-1.5"), "0"),
    "c_double": ("double", ("1.7976931348623157e308", "5e-324"), "0.1"),
    "c_bit": ("bit(8)", ("b'10101010'", "b'0'"), "b'11111111'"),
    "c_char": ("char(5)", ("'ab'", "'abcde'"), "''"),
    "c_varchar": ("varchar(20)", ("'emoji 😀'", "''"), "'x'"),
    "c_text": ("text", ("'line\\nbreak'", "REPEAT('t', 1000)"), "'y'"),
    "c_enum": ("enum('a','b')", ("'a'", "'b'"), "'a'"),
    "c_set": ("set('x','y')", ("'x,y'", "''"), "'y'"),
    "c_json": ("longtext", ("'{\"a\": [1]}'", "'[]'"), "'{}'"),
    "c_binary": ("binary(4)", ("X'00FF0000'", "X'01020304'"), "X'FFFFFFFF'"),
    "c_varbinary": ("varbinary(8)", ("X'00'", "X''"), "X'DEAD'"),
    "c_blob": ("blob", ("X'000102FF'", "X''"), "X'BEEF'"),
    "c_date": ("date", ("'1000-01-01'", "'9999-12-31'"), "'2024-02-29'"),
    "c_datetime": ("datetime(6)", ("'1000-01-01 00:00:00.000000'",
                                   "'9999-12-31 23:59:59.999999'"), "'2024-03-10 02:30:00'"),
    "c_time": ("time(6)", ("'-838:59:59.000000'", "'838:59:59.999999'"), "'00:00:00'"),
    "c_year": ("year(4)", ("1901", "2155"), "2024"),
    "c_inet6": ("inet6", ("'::1'", "'2001:db8::ff00:42:8329'"), "'::ffff:1.2.3.4'"),
    "c_uuid": ("uuid", ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                        "'00000000-0000-0000-0000-000000000000'"),
               "'ffffffff-ffff-ffff-ffff-ffffffffffff'"),
    "c_bool": ("tinyint(1)", ("0", "1"), "1"),
    "c_udec": ("decimal(5,0) unsigned", ("0", "99999"), "1"),
    "c_double_md": ("double(10,3)", ("-1234567.125", "0.001"), "1"),
    "c_tinytext": ("tinytext", ("''", "'t'"), "'u'"),
    "c_mediumtext": ("mediumtext", ("'m'", "REPEAT('é', 300)"), "'n'"),
    "c_longtext": ("longtext", ("'l'", "REPEAT('😀', 100)"), "'o'"),
    "c_tinyblob": ("tinyblob", ("X'00'", "X''"), "X'01'"),
    "c_mediumblob": ("mediumblob", ("X'FF00'", "REPEAT(X'00', 1000)"), "X'02'"),
    "c_longblob": ("longblob", ("X'7F'", "X''"), "X'03'"),
    "c_datetime0": ("datetime", ("'2024-01-01 00:00:01'", "'9999-12-31 23:59:59'"),
                    "'1000-01-01 00:00:00'"),
    "c_timestamp": ("timestamp(6) NULL", ("'1970-01-01 00:00:01.000000'",
                                          "'2038-01-19 03:14:07.999999'"), "'2000-01-01'"),
    "c_time0": ("time", ("'-00:00:01'", "'23:59:59'"), "'100:00:00'"),
}


@pytest.fixture
def pg_db(pg: psycopg.Connection[Any]) -> Iterator[str]:
    db = unique("e2e_types")
    pg.execute(f'CREATE DATABASE "{db}"')
    yield db
    pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _pg_rows(db: str, table: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    with psycopg.connect(f"{PG_BASE}/{db}") as c:
        types = [(str(n), str(t)) for n, t in c.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
            "attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,)).fetchall()]
        cols = ", ".join(f"{n}::text" for n, _ in types)
        return types, c.execute(f"SELECT {cols} FROM {table} ORDER BY id").fetchall()


def test_postgresql_types_round_trip_exactly(pg_db: str, repo: Path) -> None:
    with psycopg.connect(f"{PG_BASE}/{pg_db}", autocommit=True) as c:
        c.execute("CREATE TYPE mood AS ENUM ('sad', 'ok')")
        c.execute("CREATE TABLE matrix (id bigint, " + ", ".join(
            f"{n} {t}" for n, (t, _, _) in PG_MATRIX.items()) + ")")
        names = ", ".join(PG_MATRIX)
        for i in (0, 1):
            c.execute(f"INSERT INTO matrix (id, {names}) VALUES ({i + 1}, "
                      + ", ".join(v[i] for _, v, _ in PG_MATRIX.values()) + ")")
        c.execute("INSERT INTO matrix (id) VALUES (3)")  # every type NULL
    url = f"table+{PG_BASE}/{pg_db}?table=matrix&watermark=id"
    _ok(run_cli(repo, "backup", url, "--tag", "types"))
    with psycopg.connect(f"{PG_BASE}/{pg_db}", autocommit=True) as c:
        c.execute(f"INSERT INTO matrix (id, {names}) VALUES (4, "
                  + ", ".join(v for _, _, v in PG_MATRIX.values()) + ")")
    out = _ok(run_cli(repo, "backup", url, "--tag", "types"))
    assert "1 new row(s)" in out
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "types", "--target",
                      f"table+{PG_BASE}/{pg_db}?table=matrix_r"))
    assert "matrix_r: 4 rows, rows+checksum match" in out
    assert _pg_rows(pg_db, "matrix_r") == _pg_rows(pg_db, "matrix")
    # What Arrow holds exactly is stored typed; the rest as the server's text.
    data = _ok_bytes(run_cli(repo, "dump", "latest", "/table/matrix.parquet"))
    schema = pq.read_schema(pa.BufferReader(data))
    assert schema.field("c_int2").type == pa.int16()
    assert schema.field("c_num").type == pa.decimal128(12, 3)
    assert schema.field("c_tstz").type == pa.timestamp("us", tz="UTC")
    assert schema.field("c_interval").type == pa.string()


def _ok_bytes(proc: Any) -> bytes:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return bytes(proc.stdout)


def test_mariadb_types_round_trip_exactly(maria: Any, repo: Path) -> None:
    db = unique("e2e_mytypes")
    with maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute("CREATE TABLE matrix (id INT, " + ", ".join(
            f"{n} {t}" for n, (t, _, _) in MY_MATRIX.items()) + ")")
        names = ", ".join(MY_MATRIX)
        for i in (0, 1):
            cur.execute(f"INSERT INTO matrix (id, {names}) VALUES ({i + 1}, "
                        + ", ".join(v[i] for _, v, _ in MY_MATRIX.values()) + ")")
        cur.execute("INSERT INTO matrix (id) VALUES (3)")
    try:
        url = f"table+mysql://root@127.0.0.1:3306/{db}?table=matrix&watermark=id"
        _ok(run_cli(repo, "backup", url, "--tag", "mytypes"))
        with maria.cursor() as cur:
            cur.execute(f"INSERT INTO `{db}`.matrix (id, {names}) VALUES (4, "
                        + ", ".join(v for _, _, v in MY_MATRIX.values()) + ")")
        _ok(run_cli(repo, "backup", url, "--tag", "mytypes"))
        out = _ok(run_cli(repo, "restore", "latest", "--tag", "mytypes", "--target",
                          f"table+mysql://root@127.0.0.1:3306/{db}?table=matrix_r"))
        assert "matrix_r: 4 rows, rows+checksum match" in out

        def rows(table: str) -> tuple[Any, ...]:
            with maria.cursor() as cur:
                cur.execute("SELECT column_name, column_type FROM information_schema.columns "
                            "WHERE table_schema = %s AND table_name = %s "
                            "ORDER BY ordinal_position", (db, table))
                types = cur.fetchall()
                cur.execute(f"SELECT * FROM `{db}`.`{table}` ORDER BY id")
                return types, cur.fetchall()

        assert rows("matrix_r") == rows("matrix")
    finally:
        with maria.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
