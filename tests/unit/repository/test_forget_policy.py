"""Retention policy: restic's semantics, hand-computed cases and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import ConfigError
from airflow_backup.repository.forget import (
    UNLIMITED,
    Duration,
    ExpirePolicy,
    Semantics,
    apply_policy,
    has_tags,
    parse_count,
    parse_duration,
    parse_tag_list,
)
from airflow_backup.repository.groups import GroupKey, group_snapshots, parse_group_by
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_time

OLD = Semantics.RESTIC_0_14
NOW = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000


def snap(when: str | datetime, *, tags: list[str] | None = None, host: str = "h",
         paths: list[str] | None = None, sid: str = "") -> Snapshot:
    text = format_time(when) if isinstance(when, datetime) else when
    sid = sid or f"{abs(hash((text, host, tuple(tags or [])))):064x}"[:64]
    return Snapshot(time=text, tree=b"\0" * 32, paths=paths or ["/data"], hostname=host,
                    tags=tags or [], id=sid)


def kept(snaps: list[Snapshot], policy: ExpirePolicy, semantics: Semantics = OLD,
         now: int = NOW) -> list[str]:
    return [s.time for s in apply_policy(snaps, policy, now_ns=now, semantics=semantics).keep]


# ---- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("1y5m7d2h", Duration(1, 5, 7, 2)), ("36h", Duration(hours=36)), ("", Duration()),
    ("2d1d", Duration(days=1)), (" 3m ", Duration(months=3)),
])
def test_parse_duration(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5", "1x", "-1d", "d", "1.5d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_parse_count_and_group_by() -> None:
    assert parse_count("7") == 7
    assert parse_count("unlimited") == parse_count("-1") == UNLIMITED
    for bad in ("-2", "x"):
        with pytest.raises(ConfigError):
            parse_count(bad)
    assert parse_group_by("host,paths") == {"host", "paths"}
    assert parse_group_by("hosts,tag") == {"host", "tags"}
    assert parse_group_by("") == frozenset()
    with pytest.raises(ConfigError):
        parse_group_by("host,color")


def test_has_tags_follows_restic_for_empty_tags() -> None:
    untagged, tagged = snap("2024-01-01T00:00:00Z"), snap("2024-01-01T00:00:00Z", tags=["a"])
    assert has_tags(untagged, parse_tag_list(""))
    assert not has_tags(tagged, parse_tag_list(""))
    assert has_tags(tagged, parse_tag_list(" a "))
    assert not has_tags(untagged, parse_tag_list("a"))


# ---- hand-computed cases ------------------------------------------------------------------

def test_keep_daily_keeps_newest_of_each_day() -> None:
    times = ["2024-01-03T10:00:00Z", "2024-01-03T08:00:00Z", "2024-01-02T23:59:59Z",
             "2024-01-02T00:00:00Z", "2024-01-01T12:00:00Z"]
    snaps = [snap(t) for t in times]
    assert kept(snaps, ExpirePolicy(daily=2)) == ["2024-01-03T10:00:00Z",
                                                  "2024-01-02T23:59:59Z"]
    result = apply_policy(snaps, ExpirePolicy(daily=2), now_ns=NOW, semantics=OLD)
    assert [r.matches for r in result.reasons] == [["daily snapshot"], ["daily snapshot"]]
    assert [r.counters for r in result.reasons] == [{"daily": 1}, {}]


def test_calendar_keys_use_the_snapshots_own_offset() -> None:
    # 23:30 at -05:00 and 04:30Z are the same instant-day in UTC but different local days.
    a = snap("2024-01-01T23:30:00-05:00")   # 2024-01-02T04:30Z, local day Jan 1
    b = snap("2024-01-02T04:00:00Z")        # earlier instant, day Jan 2
    assert kept([a, b], ExpirePolicy(daily=5)) == [a.time, b.time]
    c = snap("2024-01-02T03:00:00+00:00")
    assert kept([b, c], ExpirePolicy(daily=5)) == [b.time]


def test_iso_weeks_cross_the_year() -> None:
    # 2020-12-31 and 2021-01-03 are both in ISO week 2020-W53; 2021-01-04 starts 2021-W01.
    snaps = [snap("2021-01-04T12:00:00Z"), snap("2021-01-03T12:00:00Z"),
             snap("2020-12-31T12:00:00Z"), snap("2020-12-27T12:00:00Z")]
    assert kept(snaps, ExpirePolicy(weekly=3)) == ["2021-01-04T12:00:00Z",
                                                   "2021-01-03T12:00:00Z",
                                                   "2020-12-27T12:00:00Z"]


def test_keep_within_is_strictly_after_the_boundary() -> None:
    snaps = [snap("2024-03-10T00:00:00Z"), snap("2024-03-03T00:00:00.000000001Z"),
             snap("2024-03-03T00:00:00Z"), snap("2024-03-01T00:00:00Z")]
    assert kept(snaps, ExpirePolicy(within=Duration(days=7))) == [
        "2024-03-10T00:00:00Z", "2024-03-03T00:00:00.000000001Z"]
    reasons = apply_policy(snaps, ExpirePolicy(within=Duration(days=7)), now_ns=NOW,
                           semantics=OLD).reasons
    assert reasons[0].matches == ["within 7d"]


def test_keep_within_months_uses_go_adddate_normalisation() -> None:
    # Go: 2024-03-31 minus one month is "2024-02-31", normalised to 2024-03-02.
    latest = snap("2024-03-31T12:00:00Z")
    inside = snap("2024-03-02T12:00:01Z")
    boundary = snap("2024-03-02T12:00:00Z")
    outside = snap("2024-03-01T13:00:00Z")
    got = kept([latest, inside, boundary, outside], ExpirePolicy(within=Duration(months=1)))
    assert got == [latest.time, inside.time]


def test_keep_within_measures_from_the_newest_snapshot_not_in_the_future() -> None:
    future = snap("2099-01-01T00:00:00Z")
    latest = snap("2024-05-10T00:00:00Z")
    older = snap("2024-05-05T00:00:00Z")
    oldest = snap("2024-04-01T00:00:00Z")
    got = kept([future, latest, older, oldest], ExpirePolicy(within=Duration(days=10)))
    assert got == [future.time, latest.time, older.time]


def test_keep_within_daily_keeps_one_per_day_inside_the_window() -> None:
    snaps = [snap("2024-05-10T18:00:00Z"), snap("2024-05-10T06:00:00Z"),
             snap("2024-05-09T06:00:00Z"), snap("2024-05-01T06:00:00Z")]
    result = apply_policy(snaps, ExpirePolicy(within_daily=Duration(days=3)), now_ns=NOW,
                          semantics=OLD)
    assert [s.time for s in result.keep] == ["2024-05-10T18:00:00Z", "2024-05-09T06:00:00Z"]
    assert result.reasons[0].matches == ["daily within 3d"]


def test_keep_tag_is_uncounted() -> None:
    snaps = [snap("2024-01-05T00:00:00Z", tags=["db", "nightly"]),
             snap("2024-01-04T00:00:00Z", tags=["db"]),
             snap("2024-01-03T00:00:00Z", tags=["nightly", "db"])]
    policy = ExpirePolicy(tags=(("nightly", "db"),))
    result = apply_policy(snaps, policy, now_ns=NOW, semantics=OLD)
    assert [s.time for s in result.keep] == [snaps[0].time, snaps[2].time]
    assert result.reasons[0].matches == ["has tags [nightly, db]"]


def test_current_semantics_keep_the_oldest_while_a_bucket_has_room() -> None:
    snaps = [snap("2024-01-02T10:00:00Z"), snap("2024-01-02T09:00:00Z"),
             snap("2024-01-01T10:00:00Z"), snap("2024-01-01T09:00:00Z")]
    policy = ExpirePolicy(daily=5)
    assert kept(snaps, policy, OLD) == ["2024-01-02T10:00:00Z", "2024-01-01T10:00:00Z"]
    result = apply_policy(snaps, policy, now_ns=NOW, semantics=Semantics.CURRENT)
    assert [s.time for s in result.keep] == ["2024-01-02T10:00:00Z", "2024-01-01T10:00:00Z",
                                             "2024-01-01T09:00:00Z"]
    assert result.reasons[-1].matches == ["oldest daily snapshot"]
    # A bucket that is full when the oldest snapshot comes does not keep it.
    assert kept(snaps, ExpirePolicy(daily=2), Semantics.CURRENT) == [
        "2024-01-02T10:00:00Z", "2024-01-01T10:00:00Z"]


def test_current_semantics_unlimited_and_oldest_within() -> None:
    snaps = [snap(f"2024-01-{d:02d}T10:00:00Z") for d in range(9, 0, -1)]
    assert len(kept(snaps, ExpirePolicy(daily=UNLIMITED), Semantics.CURRENT)) == 9
    assert kept(snaps, ExpirePolicy(daily=UNLIMITED), OLD) == []  # 0.14: -1 keeps nothing
    counters = apply_policy(snaps, ExpirePolicy(daily=UNLIMITED), now_ns=NOW).reasons[0].counters
    assert counters == {"daily": -1}
    two_in_a_day = [snap("2024-01-02T10:00:00Z"), snap("2024-01-02T09:00:00Z")]
    result = apply_policy(two_in_a_day, ExpirePolicy(within_daily=Duration(days=2)),
                          now_ns=NOW, semantics=Semantics.CURRENT)
    assert [r.matches for r in result.reasons] == [["daily within 2d"],
                                                   ["oldest daily within 2d"]]


def test_empty_policy() -> None:
    snaps = [snap("2024-01-02T10:00:00Z"), snap("2024-01-01T10:00:00Z")]
    old = apply_policy(snaps, ExpirePolicy(), now_ns=NOW, semantics=OLD)
    assert len(old.keep) == 2 and old.reasons[0].matches == ["policy is empty"]
    assert apply_policy(snaps, ExpirePolicy(), now_ns=NOW).keep == []


def test_describe_matches_restic_wording() -> None:
    p = ExpirePolicy(daily=7, weekly=UNLIMITED, within_daily=Duration(months=1),
                     tags=(("a", "b"),), within=Duration(years=1))
    assert p.describe() == ("keep 7 daily, all weekly snapshots, daily snapshots within 1m "
                            "and all snapshots with tags [[a, b]] and all snapshots within 1y "
                            "of the newest")
    assert ExpirePolicy().describe() == "remove"


def test_group_snapshots_sorts_paths_and_tags() -> None:
    a = snap("2024-01-01T00:00:00Z", host="x", paths=["/b", "/a"], tags=["t2", "t1"])
    b = snap("2024-01-02T00:00:00Z", host="x", paths=["/a", "/b"], tags=["t1", "t2"])
    c = snap("2024-01-03T00:00:00Z", host="y", paths=["/a", "/b"])
    groups = group_snapshots([a, b, c], parse_group_by("host,paths,tags"))
    assert [(k, len(v)) for k, v in groups] == [
        (GroupKey("x", ("/a", "/b"), ("t1", "t2")), 2), (GroupKey("y", ("/a", "/b"), None), 1)]
    assert group_snapshots([a, c], frozenset())[0][0].to_json() == {
        "hostname": "", "paths": None, "tags": None}


# ---- properties ---------------------------------------------------------------------------

_offsets = st.sampled_from([0, 3600, -5 * 3600, 19800, -9 * 3600 - 1800, 14 * 3600])
_instants = st.integers(min_value=1_577_836_800, max_value=1_672_531_200)  # 2020 .. 2023


@st.composite
def histories(draw: st.DrawFn, one_offset: bool = False) -> list[Snapshot]:
    seconds = draw(st.lists(_instants, min_size=1, max_size=40, unique=True))
    shared = draw(_offsets)
    out = []
    for i, sec in enumerate(seconds):
        tz = timezone(timedelta(seconds=shared if one_offset else draw(_offsets)))
        out.append(snap(datetime.fromtimestamp(sec, tz), sid=f"{i:064x}",
                        tags=draw(st.sampled_from([[], ["a"], ["a", "b"]]))))
    return out


def _wall(s: Snapshot) -> datetime:
    return datetime.fromisoformat(s.time.replace("Z", "+00:00")).replace(tzinfo=None)


_KEYS = {
    "hourly": lambda s: _wall(s).strftime("%Y%m%d%H"),
    "daily": lambda s: _wall(s).strftime("%Y%m%d"),
    "weekly": lambda s: tuple(_wall(s).isocalendar()[:2]),
    "monthly": lambda s: _wall(s).strftime("%Y%m"),
    "yearly": lambda s: _wall(s).year,
}


@settings(max_examples=150, deadline=None)
@given(histories(one_offset=True), st.sampled_from(sorted(_KEYS)),
       st.integers(min_value=1, max_value=6))
def test_one_bucket_keeps_the_newest_of_each_of_the_n_newest_periods(
    snaps: list[Snapshot], unit: str, n: int
) -> None:
    newest_first = sorted(snaps, key=lambda s: s.time_ns, reverse=True)
    newest_per_period: dict[object, Snapshot] = {}
    for s in newest_first:
        newest_per_period.setdefault(_KEYS[unit](s), s)
    expected = [s.id for s in list(newest_per_period.values())[:n]]
    result = apply_policy(snaps, ExpirePolicy(**{unit: n}), now_ns=NOW, semantics=OLD)
    assert [s.id for s in result.keep] == expected
    assert {s.id for s in result.keep} | {s.id for s in result.remove} == {s.id for s in snaps}
    assert not {s.id for s in result.keep} & {s.id for s in result.remove}


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=30))
def test_keep_within_hours_and_days_is_an_exact_time_window(
    snaps: list[Snapshot], hours: int, days: int
) -> None:
    latest = max(s.time_ns for s in snaps)
    window = (days * 86400 + hours * 3600) * 1_000_000_000
    policy = ExpirePolicy(within=Duration(days=days, hours=hours))
    got = {s.id for s in apply_policy(snaps, policy, now_ns=NOW, semantics=OLD).keep}
    if policy.within.is_zero():
        assert got == {s.id for s in snaps}  # an empty policy keeps everything in 0.14
    else:
        assert got == {s.id for s in snaps if s.time_ns > latest - window}


@settings(max_examples=100, deadline=None)
@given(histories(), st.lists(st.integers(min_value=0, max_value=5), min_size=6, max_size=6),
       st.integers(min_value=0, max_value=5), st.sampled_from(list(Semantics)))
def test_raising_a_count_never_removes_a_kept_snapshot(
    snaps: list[Snapshot], counts: list[int], which: int, semantics: Semantics
) -> None:
    names = ["last", "hourly", "daily", "weekly", "monthly", "yearly"]
    base = ExpirePolicy(**dict(zip(names, counts, strict=True)))
    more = ExpirePolicy(**dict(zip(names, [c + (i == which) for i, c in enumerate(counts)],
                                   strict=True)))
    before = {s.id for s in apply_policy(snaps, base, now_ns=NOW, semantics=semantics).keep}
    after = {s.id for s in apply_policy(snaps, more, now_ns=NOW, semantics=semantics).keep}
    # An empty policy is special in both semantics (0.14 keeps everything, current restic
    # refuses it), so monotonicity only holds from a non-empty policy upwards.
    if not base.is_empty():
        assert before <= after
    result = apply_policy(snaps, more, now_ns=NOW, semantics=semantics)
    times = [s.time_ns for s in result.keep]
    assert times == sorted(times, reverse=True)
