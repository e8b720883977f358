"""Where a PITR drill recovers to (:mod:`airflow_backup.pitr.drill_target`): a random time
between the newest restorable base backup's stop and the newest archived WAL, or the last
``within`` seconds of the window; never into an archive with a problem."""

from __future__ import annotations

import random

import pytest
from pitr_entries import T0, at, base, segments

from airflow_backup.errors import SnapshotNotFound, WalGap
from airflow_backup.pitr.drill_target import drill_range, format_target
from airflow_backup.pitr.gaps import check_wal_archive
from airflow_backup.repository.select import parse_as_of


def _epoch(text: str) -> float:
    return parse_as_of(text) / 1e9


def test_default_range_starts_at_the_newest_restorable_backup() -> None:
    wal = segments(1, 1, 12)
    report = check_wal_archive([base("old", 2, 3), base("new", 7, 8)], wal, {})
    rng = random.Random(7)
    for _ in range(50):
        r = drill_range(report, rng=rng)
        assert r.low == _epoch(at(81)) and r.high == _epoch(wal[-1].time)
        assert r.low <= r.target <= r.high
    doc = r.to_json()
    assert doc["from"] == format_target(r.low) and doc["target"].endswith("+00:00")


def test_within_reaches_back_but_not_before_the_window() -> None:
    wal = segments(1, 1, 12)
    report = check_wal_archive([base("old", 2, 3), base("new", 7, 8)], wal, {})
    high = _epoch(wal[-1].time)
    assert drill_range(report, within=30).low == pytest.approx(high - 30)
    # Longer than the window: from its start (the old backup's stop).
    assert drill_range(report, within=10_000).low == _epoch(at(31))


def test_a_given_time_must_be_in_the_window() -> None:
    wal = segments(1, 1, 12)
    report = check_wal_archive([base("old", 2, 3)], wal, {})
    inside = _epoch(at(50))
    assert drill_range(report, at=inside).target == inside
    with pytest.raises(SnapshotNotFound, match="outside the recoverable window"):
        drill_range(report, at=T0.timestamp())


def test_a_gap_fails_with_one_line() -> None:
    wal = [s for s in segments(1, 1, 12) if s.name != "000000010000000000000009"]
    report = check_wal_archive([base("b", 2, 3)], wal, {})
    with pytest.raises(WalGap) as info:
        drill_range(report)
    message = str(info.value)
    assert "\n" not in message and "gap in the WAL archive: 000000010000000000000009" in message


def test_nothing_recoverable_without_wal_after_a_backup() -> None:
    report = check_wal_archive([], segments(1, 1, 3), {})
    with pytest.raises(WalGap, match="no base backup"):
        drill_range(report)
    # A backup whose WAL is archived but which ended after the newest segment was archived.
    late = base("late", 2, 3)
    late.meta["stop_time"] = at(1000)
    with pytest.raises(SnapshotNotFound, match="nothing to recover to"):
        drill_range(check_wal_archive([late], segments(1, 1, 4), {}))
