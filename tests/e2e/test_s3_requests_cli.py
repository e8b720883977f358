"""The S3 requests of whole CLI commands (issue 26), counted by bench/latency_proxy.py in front
of the session's moto server: every request is a round trip on a real object store, and
most of a command's fixed cost are small ones made one after another. Counts, not timings
(docs/performance.md, "Object storage at 30 ms latency", has the timings)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import ok, run_cli
from support.counting_proxy import counting_proxy, requests_made
from support.moto import MotoServer


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[Any]:
    with counting_proxy(moto_server.endpoint) as p:
        yield p


def test_backup_and_unchanged_rebackup_request_counts(
        proxy: Any, s3_bucket: str, tmp_path: Path) -> None:
    data = tmp_path / "work" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "big.bin").write_bytes(os.urandom(3 << 20))
    for i in range(50):
        (data / "sub" / f"f{i}.txt").write_bytes(f"file {i}\n".encode() * (i + 1))
    url = f"s3:{proxy.endpoint}/{s3_bucket}/repo"
    # A cache of its own, outside the backed-up tree and its parents.
    env = {"AIRFLOW_BACKUP_CACHE_DIR": str(tmp_path / "cache")}
    ok(run_cli(url, "init", env=env))

    proxy.reset()
    ok(run_cli(url, "backup", str(data), env=env))
    first = requests_made(proxy)
    # Config and key file one GET each (no HEAD first, the key not read again for the key
    # hint); the key file that init used is read by name, without listing the keys (init
    # left its hint); locks listed twice, index and snapshots once, each empty listing one
    # LIST; our own lock neither loaded nor stat'ed twice: one HEAD, on release.
    assert first.get("get", 0) == 2, first
    assert first.get("head", 0) == 1, first
    assert first.get("list", 0) == 4, first
    assert first.get("delete", 0) == 1, first

    proxy.reset()
    ok(run_cli(url, "backup", str(data), env=env))
    again = requests_made(proxy)
    # Index, snapshot and the parent's tree packs come from the cache; the parent snapshot
    # is not checked again. restic 0.14 makes 13 requests for the same re-backup.
    assert again.get("get", 0) == 2, again
    assert again.get("head", 0) == 1, again
    assert again.get("list", 0) == 4, again
    assert sum(again.values()) <= 12, again
