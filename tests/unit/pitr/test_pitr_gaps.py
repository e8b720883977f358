"""The WAL gap check (:mod:`airflow_backup.pitr.gaps`) over catalogue entries built
directly: restorable base backups, gaps as ranges, timeline switches, the window."""

from __future__ import annotations

import pytest
from pitr_entries import SIZE, at, base, history, seg, segments

from airflow_backup.errors import ConfigError, WalGap, exit_code_for
from airflow_backup.pitr.catalog import CatalogEntry
from airflow_backup.pitr.gaps import (
    DEFAULT_SEGMENT_SIZE,
    check_wal_archive,
    choose_segment_size,
    parse_segment_size,
    recorded_segment_size,
    segment_name,
    segment_number,
)
from airflow_backup.pitr.names import format_lsn


def test_segment_names_and_numbers() -> None:
    assert segment_name(1, 2, SIZE) == "000000010000000000000002"
    assert segment_name(1, 0x100, SIZE) == "000000010000000100000000"
    assert segment_name(3, 0x1FF, SIZE) == "0000000300000001000000FF"
    assert segment_number("0000000300000001000000FF", SIZE) == 0x1FF
    # 64 MiB segments: 64 per xlogid.
    assert segment_name(1, 64, 64 << 20) == "000000010000000100000000"
    assert segment_number("000000010000000100000003", 64 << 20) == 67


def test_segment_size_option_and_metadata() -> None:
    assert parse_segment_size("16") == SIZE
    assert parse_segment_size("64MB") == 64 << 20
    assert parse_segment_size("1GiB") == 1 << 30
    assert parse_segment_size("16777216b") == SIZE
    for bad in ("15", "2G", "x", "0"):
        with pytest.raises(ConfigError):
            parse_segment_size(bad)
    # Recorded explicitly, or derived from start_wal + start_lsn.
    assert recorded_segment_size([base("a", 5, 6, record_size=True)]) == SIZE
    assert recorded_segment_size([base("a", 5, 6, size=64 << 20)]) == 64 << 20
    assert recorded_segment_size([]) is None
    assert choose_segment_size([], None) == (DEFAULT_SEGMENT_SIZE, "default")
    assert choose_segment_size([], 64 << 20) == (64 << 20, "option")
    assert choose_segment_size([base("a", 5, 6)], None) == (SIZE, "base backup")
    with pytest.raises(ConfigError, match="contradicts"):
        choose_segment_size([base("a", 5, 6)], 64 << 20)
    with pytest.raises(ConfigError, match="different WAL segment sizes"):
        recorded_segment_size([base("a", 5, 6), base("b", 9, 9, size=64 << 20)])


def test_contiguous_archive_is_ok_with_its_window() -> None:
    wal = segments(1, 1, 12)
    report = check_wal_archive([base("old", 2, 3), base("new", 7, 8)], wal, {})
    assert report.ok and report.problems() == [] and not report.gaps
    assert [b.restorable for b in report.backups] == [True, True]
    assert report.backups[0].first_wal == "000000010000000000000002"
    assert report.backups[0].last_wal == "000000010000000000000003"
    assert report.earliest == at(31)  # the old backup's stop time
    assert report.latest == wal[-1].time
    assert report.latest_segment == "00000001000000000000000C" and report.latest_timeline == 1
    assert report.timelines[0].checked_from == "000000010000000000000002"
    doc = report.to_json()
    assert doc["ok"] is True and doc["recoverable_window"]["earliest"] == at(31)


def test_a_missing_segment_between_backups_is_a_gap() -> None:
    wal = [s for s in segments(1, 1, 12) if s.name != "000000010000000000000005"]
    report = check_wal_archive([base("old", 2, 3), base("new", 7, 8)], wal, {})
    assert not report.ok
    assert [str(g) for g in report.gaps] == ["000000010000000000000005 (1 segment, timeline 1)"]
    assert all(b.restorable for b in report.backups)  # both still restorable on their own
    assert any("000000010000000000000005" in p for p in report.problems())
    # The window still ends at the newest segment (reached from the newest backup).
    assert report.latest_segment == "00000001000000000000000C"


def test_gaps_are_merged_into_ranges_across_the_xlogid_boundary() -> None:
    keep = set(range(0xF0, 0xFE)) | set(range(0x102, 0x110))
    wal = [seg(1, n) for n in sorted(keep)]
    report = check_wal_archive([base("b", 0xF0, 0xF1)], wal, {})
    assert [g.to_json() for g in report.gaps] == [
        {"timeline": 1, "first": "0000000100000000000000FE",
         "last": "000000010000000100000001", "count": 4}]
    # Missing WAL before the oldest backup's start is not a gap.
    assert check_wal_archive([base("b", 0x102, 0x103)], wal, {}).ok


def test_a_backup_whose_wal_is_missing_is_not_restorable() -> None:
    wal = [s for s in segments(1, 1, 10) if s.name != "000000010000000000000008"]
    report = check_wal_archive([base("a", 2, 3), base("b", 7, 9)], wal, {})
    status = {b.snapshot_id: b for b in report.backups}
    assert status["a"].restorable and not status["b"].restorable
    assert [str(r) for r in status["b"].missing] == [
        "000000010000000000000008 (1 segment, timeline 1)"]
    assert report.problems()[0].startswith("base backup b cannot be restored")
    # Only one backup and its stop segment missing: nothing restorable.
    lone = check_wal_archive([base("b", 7, 9)], wal, {})
    assert not lone.ok and lone.earliest is None and lone.latest is None
    assert "no base backup can be restored" in lone.problems()


def test_a_backup_ending_on_a_segment_boundary_needs_no_next_segment() -> None:
    b = base("b", 3, 3)
    b.meta["stop_lsn"] = format_lsn(4 * SIZE)  # the last byte is in segment 3
    report = check_wal_archive([b], segments(1, 3, 3), {})
    assert report.ok and report.backups[0].last_wal == "000000010000000000000003"


def test_no_base_backup_is_a_problem() -> None:
    report = check_wal_archive([], segments(1, 1, 3), {})
    assert not report.ok
    assert report.problems()[0].startswith("no base backup")
    assert report.timelines[0].checked_from is None and report.warnings


def _switched() -> tuple[list[CatalogEntry], dict[int, dict[int, int]]]:
    """Timeline 1: segments 1..5 (5 only as .partial), switch to 2 inside segment 5;
    timeline 2: 5..9."""
    wal = [*segments(1, 1, 4), seg(1, 5, kind="partial"), history(2), *segments(2, 5, 9)]
    return wal, {2: {1: 5 * SIZE + 0x4000}}


def test_the_lineage_follows_the_switch_point_of_the_history_file() -> None:
    wal, hist = _switched()
    report = check_wal_archive([base("b", 2, 3)], wal, hist)
    assert report.ok, report.problems()
    tl2 = next(t for t in report.timelines if t.timeline == 2)
    assert (tl2.parent, tl2.begins_at) == (1, "000000020000000000000005")
    assert tl2.checked_from == "000000010000000000000002"
    assert report.latest_timeline == 2 and report.latest_segment == "000000020000000000000009"
    # The first segment of timeline 2 missing (timeline 1's .partial does not fill it).
    holed = [e for e in wal if e.name != "000000020000000000000005"]
    report = check_wal_archive([base("b", 2, 3)], holed, hist)
    assert [str(g) for g in report.gaps] == ["000000020000000000000005 (1 segment, timeline 2)"]
    # A segment of timeline 1 before the switch missing: a gap on timeline 1.
    holed = [e for e in wal if e.name != "000000010000000000000004"]
    report = check_wal_archive([base("b", 2, 3)], holed, hist)
    assert [g.first for g in report.gaps] == ["000000010000000000000004"]


def test_a_backup_on_the_new_timeline_and_a_missing_history_file() -> None:
    wal, hist = _switched()
    assert check_wal_archive([base("b", 6, 7, tli=2)], wal, hist).ok
    report = check_wal_archive([base("b", 2, 3)], [e for e in wal if e.name != "00000002.history"],
                               {})
    assert report.missing_histories == (2,) and not report.ok
    assert any("00000002.history" in p for p in report.problems())


def test_a_timeline_no_backup_reaches_is_only_a_warning() -> None:
    # The old primary went on on timeline 1 after the switch; the only backup was taken on
    # timeline 1 after it, so timeline 2 cannot be reached from it.
    wal = [*segments(1, 1, 9), history(2), *segments(2, 5, 6)]
    report = check_wal_archive([base("late", 7, 8)], wal, {2: {1: 5 * SIZE + 0x4000}})
    assert report.ok
    assert any("timeline 2" in w for w in report.warnings)
    assert report.latest_timeline == 1


def test_the_error_class_exits_1_and_is_not_retried() -> None:
    assert exit_code_for(WalGap("x")) == 1 and not WalGap("x").retryable
