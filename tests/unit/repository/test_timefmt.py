"""RFC 3339 times with nanoseconds, as Go's ``time.RFC3339Nano`` formats them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.repository.timefmt import format_ns, format_time, parse_ns, parse_time

NS = 1_000_000_000
# 0002-01-01 .. 9998-12-31: every offset keeps the local date inside years 1..9999.
SANE_NS = st.integers(-62_104_060_800 * NS, 253_370_764_800 * NS - 1)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: m * 60)


def oracle(ns: int, offset: int) -> str:
    """Go's RFC3339Nano written with datetime's own timezone arithmetic."""
    sec, frac = divmod(ns, NS)
    tz = UTC if offset == 0 else timezone(timedelta(seconds=offset))
    dt = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=sec)).astimezone(tz)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") if dt.year >= 1000 else \
        f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S")
    if frac:
        text += "." + str(frac).rjust(9, "0").rstrip("0")
    if offset == 0:
        return text + "Z"
    zone = dt.strftime("%z")  # +HHMM
    return f"{text}{zone[:3]}:{zone[3:5]}"


@settings(max_examples=300, deadline=None)
@given(ns=SANE_NS, offset=OFFSETS)
def test_format_parse_round_trip(ns: int, offset: int) -> None:
    text = format_ns(ns, offset)
    assert text == oracle(ns, offset)
    assert parse_ns(text) == (ns, offset)


@pytest.mark.parametrize(("ns", "offset", "text"), [
    (1_704_164_645 * NS + 100_000_000, 0, "2024-01-02T03:04:05.1Z"),
    (1_704_164_645 * NS, 0, "2024-01-02T03:04:05Z"),
    (1_704_164_645 * NS + 1, 0, "2024-01-02T03:04:05.000000001Z"),
    (1_704_164_645 * NS + 123_450_000, 0, "2024-01-02T03:04:05.12345Z"),
    (1_704_164_645 * NS + 999_999_999, 0, "2024-01-02T03:04:05.999999999Z"),
    (1_704_164_645 * NS, 7200, "2024-01-02T05:04:05+02:00"),
    (1_704_164_645 * NS, -(5 * 3600 + 30 * 60), "2024-01-01T21:34:05-05:30"),
    (1_704_164_645 * NS, 14 * 3600, "2024-01-02T17:04:05+14:00"),
    (0, 0, "1970-01-01T00:00:00Z"),
    (-1, 0, "1969-12-31T23:59:59.999999999Z"),
    (-62_135_596_800 * NS, 0, "0001-01-01T00:00:00Z"),
    (253_402_300_799 * NS, 0, "9999-12-31T23:59:59Z"),
])
def test_known_values(ns: int, offset: int, text: str) -> None:
    assert format_ns(ns, offset) == text
    assert parse_ns(text) == (ns, offset)


@pytest.mark.parametrize(("text", "ns", "offset"), [
    ("2024-01-02T03:04:05.10Z", 1_704_164_645 * NS + 100_000_000, 0),
    ("2024-01-02T03:04:05+00:00", 1_704_164_645 * NS, 0),
    ("2024-01-02t03:04:05z", 1_704_164_645 * NS, 0),
    ("2024-01-02T05:04:05.5+02:00", 1_704_164_645 * NS + 500_000_000, 7200),
    (" 2024-01-02T03:04:05Z\n", 1_704_164_645 * NS, 0),
    ("2024-02-29T00:00:00-00:30", 1_709_166_600 * NS, -1800),
])
def test_parse_accepts_equivalent_spellings(text: str, ns: int, offset: int) -> None:
    assert parse_ns(text) == (ns, offset)


@pytest.mark.parametrize("text", ["", "2024-01-02", "2024-01-02T03:04:05",
                                  "2024-01-02T03:04:05.Z", "2024-01-02T03:04:05.1234567890Z",
                                  "2024-01-02T03:04:05+0200", "yesterday",
                                  "2024-02-30T03:04:05Z", "2023-02-29T03:04:05Z",
                                  "2024-13-02T03:04:05Z", "0000-01-02T03:04:05Z",
                                  "2024-01-02T24:00:00Z", "2024-01-02T03:60:05Z",
                                  "2024-01-02T03:04:60Z"])
def test_parse_rejects_non_rfc3339(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ns(text)


def test_format_time_of_aware_datetimes() -> None:
    tz = timezone(timedelta(hours=-3))
    assert format_time(datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=tz)) == \
        "2024-01-02T03:04:05.12-03:00"
    assert format_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"


def test_parse_time_keeps_the_offset_and_drops_sub_microseconds() -> None:
    dt = parse_time("2024-01-02T05:04:05.123456789+02:00")
    assert dt.utcoffset() == timedelta(hours=2)
    assert dt == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert parse_time("2024-01-02T03:04:05Z").utcoffset() == timedelta(0)


def test_local_time_format_parses_back() -> None:
    ns = 1_704_164_645 * NS + 42
    assert parse_ns(format_ns(ns))[0] == ns
