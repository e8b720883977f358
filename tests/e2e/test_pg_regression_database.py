"""PostgreSQL's own regression database (built by pg_regress from PostgreSQL's test SQL, on a
cluster of the test's own) backs up and restores in every format with every table's check
passing and the schema as pg_dump shows it unchanged.

pg_dump 15 cannot keep the column order of an inheritance child whose local columns are in
another order than its parent's (``CREATE TABLE c (b int, a int) INHERITS (p)`` creates
``a, b``); the schema comparison sorts the column lines of ``INHERITS`` tables only, and
the data checks compare by column name.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import ok_stdout, run_cli
from support.pg_cluster import Cluster, own_cluster
from support.pg_regress import build_regression_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def regression() -> Iterator[tuple[Cluster, int]]:
    with own_cluster() as cluster:
        tables = build_regression_database(cluster)
        assert tables > 500, tables  # 537 with PostgreSQL 15
        yield cluster, tables


def _schema(cluster: Cluster, database: str) -> str:
    text = subprocess.run(["pg_dump", "--schema-only", "-h", "127.0.0.1", "-p",
                           str(cluster.port), "-U", "postgres", database],
                          capture_output=True, text=True, check=True).stdout
    # \restrict carries a random key per run (pg_dump >= 15.14).
    return re.sub(r"^\\(un)?restrict \S+$", "", text, flags=re.M)


def _inherits_columns_sorted(text: str) -> str:
    def sort_block(match: re.Match[str]) -> str:
        lines = [ln.rstrip(",") for ln in match["cols"].split("\n")]
        return match["head"] + ",\n".join(sorted(lines)) + match["tail"]

    return re.sub(r"(?P<head>CREATE TABLE [^\n]+ \(\n)(?P<cols>(?:    [^\n]+\n?)+?)"
                  r"(?P<tail>\n\)\nINHERITS)", sort_block, text)


@pytest.mark.parametrize("fmt", ["plain", "custom", "directory"])
def test_regression_database_round_trips_with_checks_and_schema(
        fmt: str, regression: tuple[Cluster, int], tmp_path: Path) -> None:
    cluster, tables = regression
    repo = tmp_path / "repo"
    ok_stdout(run_cli(repo, "init"))
    ok_stdout(run_cli(repo, "backup", f"{cluster.url('regression')}?format={fmt}",
                      "--tag", "regress"))
    target = f"regression_{fmt}"
    out = ok_stdout(run_cli(repo, "restore", "latest", "--tag", "regress", "--target",
                            cluster.url(target)))
    assert f"{tables} table(s) verified" in out
    assert out.count("match") == tables and "note:" not in out
    original, restored = _schema(cluster, "regression"), _schema(cluster, target)
    assert _inherits_columns_sorted(restored) == _inherits_columns_sorted(original)
    # the only differences are those column orders (three tables in PostgreSQL 15)
    differing = {ln for ln in set(original.splitlines()) ^ set(restored.splitlines())}
    assert len(original.splitlines()) == len(restored.splitlines())
    assert all(ln.startswith("    ") for ln in differing), sorted(differing)[:10]
