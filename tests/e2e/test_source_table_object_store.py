"""Incremental table exports and object-store prefixes through the CLI.

Incremental: three runs with new rows in between store only the new rows, and a restore as
of the second run gives exactly the rows present then. Object store (moto S3 server): an
unchanged object is not downloaded again, and restores go to another prefix or back in place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
import s3fs

from support.cli import ok_stdout as _ok
from support.cli import repo, run_cli
from support.sources import PG_BASE, moto_endpoint, pg, pg_fingerprint, unique

__all__ = ["moto_endpoint", "pg", "repo"]  # fixtures




def _snapshots(repo: Path, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(_ok(run_cli(repo, "snapshots", "--json", *args))))


@pytest.fixture
def events_db(pg: psycopg.Connection[Any]) -> Iterator[str]:
    db = unique("e2e_inc")
    pg.execute(f'CREATE DATABASE "{db}"')
    yield db
    pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _sql(db: str, text: str) -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db, autocommit=True) as c:
        c.execute(text)


def _insert(db: str, first: int, count: int) -> None:
    _sql(db, f"INSERT INTO events (payload, amount, at) SELECT 'p' || g, g / 8.0, "
             f"'2024-01-01'::timestamptz + g * interval '1 minute' "
             f"FROM generate_series({first}, {first + count - 1}) g")


def test_three_increments_store_only_new_rows_and_restore_as_of_the_second(
        events_db: str, repo: Path) -> None:
    db = events_db
    _sql(db, "CREATE TABLE events (id bigserial PRIMARY KEY, payload text, "
             "amount numeric(12,3), at timestamptz)")
    url = f"table+{PG_BASE}/{db}?table=events&watermark=id"
    states = []
    for first, count in ((1, 1000), (1001, 400), (1401, 250)):
        _insert(db, first, count)
        states.append(pg_fingerprint(db)["public.events"])
        out = _ok(run_cli(repo, "backup", url, "--tag", "events"))
        assert f"{count} new row(s) past the last watermark" in out
        time.sleep(1.1)  # distinct snapshot times for --as-of
    snaps = _snapshots(repo, "--tag", "events")
    exports = [s["airflow_backup"]["export"] for s in snaps]
    assert [e["rows"] for e in exports] == [1000, 400, 250]
    assert [e["rows_total"] for e in exports] == [1000, 1400, 1650]
    assert exports[0]["watermark_from"] is None
    assert exports[1]["watermark_from"] == exports[0]["watermark_to"]
    assert exports[2]["watermark_to"] == {"type": "int", "value": "1650"}
    # what is stored is only the new rows: read the Parquet file of each snapshot back
    for snap, (first, count) in zip(snaps, ((1, 1000), (1001, 400), (1401, 250)), strict=True):
        data = _ok_bytes(run_cli(repo, "dump", snap["id"], "/table/events.parquet"))
        ids = pq.read_table(io.BytesIO(data)).column("id").to_pylist()
        assert ids == list(range(first, first + count))

    # restore as of the second run (a time between run 2 and run 3)
    second = datetime.fromisoformat(snaps[1]["time"].replace("Z", "+00:00"))
    as_of = second.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "events", "--as-of", as_of,
                      "--target", f"table+{PG_BASE}/{db}?table=events_as_of_2"))
    assert "events_as_of_2: 1400 rows, rows+checksum match" in out
    assert pg_fingerprint(db)["public.events_as_of_2"] == states[1]
    # and the latest: all three increments
    _ok(run_cli(repo, "restore", "latest", "--tag", "events", "--target",
                f"table+{PG_BASE}/{db}?table=events_all"))
    assert pg_fingerprint(db)["public.events_all"] == states[2]


def test_updates_and_soft_deletes_with_a_key_column(events_db: str, repo: Path) -> None:
    db = events_db
    _sql(db, "CREATE TABLE items (id int PRIMARY KEY, name text, updated bigint, "
             "deleted boolean DEFAULT false); INSERT INTO items SELECT g, 'n' || g, g, false "
             "FROM generate_series(1, 100) g")
    url = f"table+{PG_BASE}/{db}?table=items&watermark=updated&key=id&deleted=deleted"
    _ok(run_cli(repo, "backup", url))
    _sql(db, "UPDATE items SET name = 'renamed', updated = 1000 + id WHERE id <= 10; "
             "UPDATE items SET deleted = true, updated = 2000 + id WHERE id BETWEEN 11 AND 15")
    out = _ok(run_cli(repo, "backup", url))
    assert "15 new row(s)" in out
    out = _ok(run_cli(repo, "restore", "latest", "--target",
                      f"table+{PG_BASE}/{db}?table=items_restored"))
    assert "items_restored: 95 rows, rows match" in out
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db) as c:
        rows = dict(c.execute("SELECT id, name FROM items_restored").fetchall())
    assert sorted(rows) == [i for i in range(1, 101) if not 11 <= i <= 15]
    assert all(rows[i] == "renamed" for i in range(1, 11))
    assert all(rows[i] == f"n{i}" for i in range(16, 101))


@pytest.mark.parametrize("key", ["", "id"], ids=["append-only", "keyed"])
def test_a_late_row_with_the_same_watermark_value_is_exported_once(
        events_db: str, repo: Path, key: str) -> None:
    """A second-resolution ``updated_at``: a row committed after an export with the SAME
    value as the last exported row is not missed by the next export, and the rows already
    exported at that value are not stored twice (with or without a key column)."""
    db = events_db
    _sql(db, "CREATE TABLE ev (id int PRIMARY KEY, body text, updated_at timestamp(0)); "
             "INSERT INTO ev SELECT g, 'b' || g, '2024-01-01 10:00:00'::timestamp "
             "+ (g / 3) * interval '1 second' FROM generate_series(1, 8) g")
    url = f"table+{PG_BASE}/{db}?table=ev&watermark=updated_at" + (f"&key={key}" if key else "")
    out = _ok(run_cli(repo, "backup", url, "--tag", "ev"))
    assert "8 new row(s)" in out
    # Late rows with the last exported value (10:00:02: ids 6-8 have it), and a newer one.
    _sql(db, "INSERT INTO ev VALUES (9, 'late', '2024-01-01 10:00:02'), "
             "(10, 'late too', '2024-01-01 10:00:02'), (11, 'newer', '2024-01-01 10:00:03')")
    out = _ok(run_cli(repo, "backup", url, "--tag", "ev"))
    assert "3 new row(s)" in out, out
    _sql(db, "INSERT INTO ev VALUES (12, 'late again', '2024-01-01 10:00:03')")
    out = _ok(run_cli(repo, "backup", url, "--tag", "ev"))
    assert "1 new row(s)" in out, out
    out = _ok(run_cli(repo, "backup", url, "--tag", "ev"))  # nothing new: nothing stored
    assert "0 new row(s)" in out, out
    ids = []
    for snap in _snapshots(repo, "--tag", "ev"):
        data = _ok_bytes(run_cli(repo, "dump", snap["id"], "/table/ev.parquet"))
        ids += pq.read_table(io.BytesIO(data)).column("id").to_pylist()
    assert sorted(ids) == list(range(1, 13))  # every row once
    out = _ok(run_cli(repo, "restore", "latest", "--tag", "ev", "--target",
                      f"table+{PG_BASE}/{db}?table=ev_r"))
    assert "ev_r: 12 rows" in out and "match" in out, out
    assert pg_fingerprint(db)["public.ev_r"] == pg_fingerprint(db)["public.ev"]


def test_hard_deletes_are_not_captured_and_the_restore_says_so(events_db: str,
                                                               repo: Path) -> None:
    """The documented limitation: without a soft-delete column, a deleted row stays."""
    db = events_db
    _sql(db, "CREATE TABLE log (id int PRIMARY KEY, msg text); "
             "INSERT INTO log SELECT g, 'm' || g FROM generate_series(1, 50) g")
    url = f"table+{PG_BASE}/{db}?table=log&watermark=id"
    _ok(run_cli(repo, "backup", url))
    _sql(db, "DELETE FROM log WHERE id = 7; INSERT INTO log VALUES (51, 'm51')")
    _ok(run_cli(repo, "backup", url))
    proc = run_cli(repo, "restore", "latest", "--target", f"table+{PG_BASE}/{db}?table=log_r")
    assert proc.returncode == 1
    line = proc.stderr.decode().strip()
    assert "51 rows (expected 50)" in line and "soft-delete column" in line
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db) as c:
        assert c.execute("SELECT count(*) FROM log_r WHERE id = 7").fetchone() == (1,)


def _ok_bytes(proc: subprocess.CompletedProcess[bytes]) -> bytes:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_object_store_prefix_skips_unchanged_objects_and_restores(
        moto_endpoint: str, repo: Path) -> None:
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_endpoint},
                           skip_instance_cache=True)
    bucket = unique("e2e-bkt").replace("_", "-")
    fs.mkdir(bucket)
    for i in range(30):
        fs.pipe(f"{bucket}/logs/2024/{i:02d}.log", os.urandom(20_000 + 1000 * i))
    q = f"?endpoint_url={moto_endpoint}"

    def listing(prefix: str) -> dict[str, str]:
        fs.invalidate_cache()
        return {p.split(f"/{prefix}/", 1)[1]: hashlib.sha256(fs.cat(p)).hexdigest()
                for p in fs.find(f"{bucket}/{prefix}")}

    first = listing("logs")
    out = _ok(run_cli(repo, "backup", f"s3://{bucket}/logs{q}", "--tag", "s3"))
    assert "30 object(s) downloaded, 0 unchanged" in out
    fs.pipe(f"{bucket}/logs/2024/07.log", b"rewritten")
    fs.pipe(f"{bucket}/logs/2024/new.log", b"brand new")
    second = listing("logs")
    out = _ok(run_cli(repo, "backup", f"s3://{bucket}/logs{q}", "--tag", "s3"))
    assert "2 object(s) downloaded, 29 unchanged" in out
    snaps = _snapshots(repo, "--tag", "s3")
    assert snaps[1]["airflow_backup"]["export"] == {"downloaded": 2, "reused": 29}
    assert snaps[1]["summary"]["files_unmodified"] == 29

    # the first snapshot into another prefix, the second back in place after damage
    _ok(run_cli(repo, "restore", snaps[0]["id"], "--target", f"s3://{bucket}/copy{q}"))
    assert listing("copy") == first
    fs.rm(f"{bucket}/logs/2024/01.log")
    fs.pipe(f"{bucket}/logs/2024/02.log", b"damaged")
    _ok(run_cli(repo, "restore", "latest", "--tag", "s3", "--target",
                f"s3://{bucket}/logs{q}", "--clean"))
    assert listing("logs") == second


def test_object_store_keeps_every_key_and_its_headers_and_metadata(
        moto_endpoint: str, repo: Path, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = unique("e2e-meta").replace("_", "-")
    s3.create_bucket(Bucket=bucket)
    objects = {
        "site/index.html": dict(Body=b"<h1>hi</h1>", ContentType="text/html; charset=utf-8",
                                CacheControl="max-age=300", ContentLanguage="en",
                                Metadata={"owner": "web", "build_id": "42"}),
        "site/app.js.gz": dict(Body=os.urandom(5000), ContentType="application/javascript",
                               ContentEncoding="gzip",
                               ContentDisposition='attachment; filename="app.js"'),
        "site/assets/": dict(Body=b"a folder marker that holds data"),
        "site/empty/": dict(Body=b""),
        "site/a//b": dict(Body=b"double slash"),
        "site/./dot": dict(Body=b"dot segment"),
    }
    for key, args in objects.items():
        s3.put_object(Bucket=bucket, Key=key, **args)  # type: ignore[arg-type]

    def state(prefix: str) -> dict[str, Any]:
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                head = s3.head_object(Bucket=bucket, Key=item["Key"])
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                out[item["Key"][len(prefix) + 1:]] = (
                    hashlib.sha256(body).hexdigest(), head.get("ContentType"),
                    head.get("ContentEncoding"), head.get("CacheControl"),
                    head.get("ContentDisposition"), head.get("ContentLanguage"),
                    head.get("Metadata"))
        return out

    original = state("site")
    assert len(original) == 6
    q = f"?endpoint_url={moto_endpoint}"
    out = _ok(run_cli(repo, "backup", f"s3://{bucket}/site{q}", "--tag", "meta"))
    assert "6 object(s) downloaded" in out
    _ok(run_cli(repo, "restore", "latest", "--tag", "meta", "--target",
                f"s3://{bucket}/copy{q}"))
    assert state("copy") == original
    # an unchanged second backup reuses every node, headers included
    out = _ok(run_cli(repo, "backup", f"s3://{bucket}/site{q}", "--tag", "meta"))
    assert "0 object(s) downloaded, 6 unchanged" in out
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "site/" + k}
                                                          for k in original]})
    _ok(run_cli(repo, "restore", "latest", "--tag", "meta", "--target",
                f"s3://{bucket}/site{q}"))
    assert state("site") == original
    s3.put_object(Bucket=bucket, Key="site/assets/", Body=b"damaged", ContentType="x/y")
    s3.put_object(Bucket=bucket, Key="site/stray/", Body=b"")
    _ok(run_cli(repo, "restore", "latest", "--tag", "meta", "--target",
                f"s3://{bucket}/site{q}", "--clean"))
    assert state("site") == original
    # the escaped paths restore as plain files too
    _ok(run_cli(repo, "restore", "latest", "--tag", "meta", "--target", str(tmp_path / "f")))
    files = sorted(str(p.relative_to(tmp_path / "f")) for p in (tmp_path / "f").rglob("*")
                   if p.is_file())
    assert "objects/assets/%" in files and "objects/a/%/b" in files
    assert "objects/%2E/dot" in files
