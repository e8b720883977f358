"""Point-in-time selection: --as-of picks the newest snapshot at or before a time."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from airflow_backup.errors import ConfigError, SnapshotNotFound
from airflow_backup.repository.select import (
    SnapshotFilter,
    parse_as_of,
    pick_as_of,
    resolve_snapshot,
)
from airflow_backup.repository.snapshot import Snapshot

NS = 1_000_000_000


def _snap(time: str, sid: str, tags: list[str] | None = None) -> Snapshot:
    return Snapshot(time=time, tree=b"\0" * 32, paths=["/d"], hostname="h", tags=tags or [],
                    id=sid * 64)


SNAPS = [_snap("2024-01-01T10:00:00Z", "a"), _snap("2024-01-02T10:00:00.5Z", "b"),
         _snap("2024-01-03T10:00:00+02:00", "c")]


@pytest.mark.parametrize(("when", "expected"), [
    ("2024-01-01T10:00:00Z", "a"),            # exactly the first
    ("2024-01-02T10:00:00.5Z", "b"),          # exactly, with a fraction
    ("2024-01-02T10:00:00.499999999Z", "a"),  # one nanosecond before b
    ("2024-01-02T14:00:00+02:00", "b"),       # between b and c, written in another offset
    ("2024-01-02T12:00:00+02:00", "a"),       # 10:00Z: half a second before b
    ("2024-01-03T08:00:00Z", "c"),            # c is 08:00Z: exact, across offsets
    ("2099-01-01T00:00:00Z", "c"),            # after the last
])
def test_pick_as_of_boundaries(when: str, expected: str) -> None:
    assert pick_as_of(SNAPS, parse_as_of(when)).id == expected * 64


def test_pick_as_of_before_the_first_snapshot_fails() -> None:
    with pytest.raises(SnapshotNotFound, match="no snapshot at or before"):
        pick_as_of(SNAPS, parse_as_of("2024-01-01T09:59:59.999999999Z"))
    with pytest.raises(SnapshotNotFound):
        pick_as_of([], parse_as_of("2024-01-01T00:00:00Z"))


def test_equal_times_pick_one_deterministically() -> None:
    twins = [_snap("2024-01-01T10:00:00Z", "1"), _snap("2024-01-01T10:00:00Z", "2")]
    assert pick_as_of(twins, parse_as_of("2024-01-01T10:00:00Z")).id == "2" * 64


def test_parse_as_of_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    try:
        base = int(datetime(2024, 1, 31, tzinfo=UTC).timestamp()) * NS
        assert parse_as_of("2024-01-31") == base
        assert parse_as_of("2024-01-31 23:00") == base + 23 * 3600 * NS
        assert parse_as_of("2024-01-31T23:00:05.25") == base + (23 * 3600 + 5) * NS + NS // 4
        assert parse_as_of("2024-01-31T23:00:00+01:00") == base + 22 * 3600 * NS
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    for bad in ("yesterday", "2024-13-01", "2024-01-01 25:00", ""):
        with pytest.raises(ConfigError):
            parse_as_of(bad)
    assert os.environ.get("TZ") is None


def test_resolve_snapshot_combines_filters_and_as_of(mem_repo, backup) -> None:  # type: ignore[no-untyped-def]
    t = [datetime(2024, 1, d, 12, tzinfo=UTC) for d in (1, 2, 3)]
    a = backup(mem_repo, {"f": b"1"}, t[0], tags=("x",))
    b = backup(mem_repo, {"f": b"2"}, t[1], tags=("y",))
    c = backup(mem_repo, {"f": b"3"}, t[2], tags=("x",))
    assert resolve_snapshot(mem_repo, None, None, "2024-01-02T12:00:00Z").id == b.id
    assert resolve_snapshot(mem_repo, "latest", SnapshotFilter(tags=["x"]),
                            "2024-01-02T12:00:00Z").id == a.id
    assert resolve_snapshot(mem_repo, "latest", None, None).id == c.id
    with pytest.raises(ConfigError, match="either a snapshot id or --as-of"):
        resolve_snapshot(mem_repo, a.id[:8], None, "2024-01-02")
    with pytest.raises(ConfigError):
        resolve_snapshot(mem_repo, None, None, None)
