"""Retention policies with restic's semantics: which snapshots ``forget`` keeps, and why.

Pure functions over snapshot lists; nothing here touches storage. The rules follow restic's
``ExpirePolicy``/``ApplyPolicy`` (``internal/restic/snapshot_policy.go``):

- Snapshots are walked newest first. A ``--keep-<unit> N`` bucket keeps a snapshot whenever its
  calendar key (hour, day, ISO week, month, year; for ``last``: its position) differs from the
  key of the previous snapshot the bucket kept, until N snapshots were kept.
- Calendar keys use the wall clock in the snapshot's own UTC offset, as restic does.
- ``--keep-within D`` keeps every snapshot newer than ``latest - D``; the ``--keep-within-<unit>``
  variants keep one snapshot per calendar key among those. ``latest`` is the newest snapshot
  that is not in the future. ``D - 1 month`` uses Go's ``AddDate`` normalisation
  (31 March minus one month is 3 March).
- ``--keep-tag`` keeps snapshots that carry all tags of any given list.

Two flavours exist, selected by :class:`Semantics`. ``CURRENT`` (restic >= 0.16, the default):
``-1`` means unlimited, and when a bucket still has room at the oldest snapshot of a group, that
oldest snapshot is kept too (reason ``"oldest … snapshot"``). ``RESTIC_0_14``: restic 0.14/0.15
exactly, without those two rules.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from airflow_backup.errors import ConfigError
from airflow_backup.repository.snapshot import Snapshot

__all__ = [
    "UNLIMITED",
    "Duration",
    "ExpirePolicy",
    "KeepReason",
    "PolicyResult",
    "Semantics",
    "apply_policy",
    "has_tags",
    "parse_count",
    "parse_duration",
    "parse_tag_list",
]

UNLIMITED = -1
_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1)


class Semantics(enum.Enum):
    """Which restic release's retention rules to follow."""

    CURRENT = "current"
    RESTIC_0_14 = "0.14"


@dataclass(frozen=True, slots=True)
class Duration:
    """restic's calendar duration ``1y5m7d2h``: years, months, days and hours."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def is_zero(self) -> bool:
        """Return whether every component is zero (the option was not given)."""
        return not (self.years or self.months or self.days or self.hours)

    def __str__(self) -> str:
        parts = [(self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")]
        return "".join(f"{n}{unit}" for n, unit in parts if n)


_DURATION_PART = re.compile(r"(\d+)([ymdh])")


def parse_duration(text: str) -> Duration:
    """Given restic's duration syntax (``2y``, ``1y6m``, ``36h``, ``1y5m7d2h``), return the
    Duration. A unit given twice keeps the last value, as restic does. Raise ConfigError if
    the text is malformed or negative."""
    s = text.strip()
    values = {"y": 0, "m": 0, "d": 0, "h": 0}
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ConfigError(f"invalid duration {text!r}: use numbers with units y, m, d, h "
                              "(e.g. 1y6m, 14d, 36h); negative values are not allowed")
        values[m.group(2)] = int(m.group(1))
        pos = m.end()
    return Duration(values["y"], values["m"], values["d"], values["h"])


def parse_count(text: str) -> int:
    """Given a ``--keep-*`` count (a number >= 0, ``-1`` or ``unlimited``), return it, with
    UNLIMITED for ``unlimited``/``-1``. Raise ConfigError otherwise."""
    if text.strip() == "unlimited":
        return UNLIMITED
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"invalid count {text!r}: use a number or 'unlimited'") from None
    if value < UNLIMITED:
        raise ConfigError(f"invalid count {text!r}: negative values other than -1 are not "
                          "allowed (use 'unlimited')")
    return value


def parse_tag_list(text: str) -> tuple[str, ...]:
    """Given ``a,b`` as written after ``--tag``/``--keep-tag``, return the tags, each stripped
    (an empty string stays, and matches untagged snapshots, as in restic)."""
    return tuple(t.strip() for t in text.split(","))


def has_tags(sn: Snapshot, tags: Sequence[str]) -> bool:
    """Return whether ``sn`` carries every tag in ``tags`` (restic's ``HasTags``: an empty
    tag, reached before any missing one, matches a snapshot without tags)."""
    for tag in tags:
        if tag == "" and not sn.tags:
            return True
        if tag not in sn.tags:
            return False
    return True


@dataclass(frozen=True, slots=True)
class ExpirePolicy:
    """A retention policy: counts per bucket (0 = off, UNLIMITED = all), durations and
    tag lists, like restic's ``forget --keep-*`` options."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = Duration()
    within_hourly: Duration = Duration()
    within_daily: Duration = Duration()
    within_weekly: Duration = Duration()
    within_monthly: Duration = Duration()
    within_yearly: Duration = Duration()
    tags: tuple[tuple[str, ...], ...] = ()

    def counts(self) -> list[int]:
        """Return the six bucket counts in restic's order (last … yearly)."""
        return [self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly]

    def within_durations(self) -> list[Duration]:
        """Return the five ``within-<unit>`` durations (hourly … yearly)."""
        return [self.within_hourly, self.within_daily, self.within_weekly,
                self.within_monthly, self.within_yearly]

    def is_empty(self) -> bool:
        """Return whether no rule is set at all."""
        return (not self.tags and not any(self.counts()) and self.within.is_zero()
                and all(d.is_zero() for d in self.within_durations()))

    def describe(self) -> str:
        """Return a one-line description, worded like restic's ``Applying Policy: …``."""
        names = ["latest", "hourly", "daily", "weekly", "monthly", "yearly"]
        keeps = [f"{n} {name}" if n > 0 else f"all {name}"
                 for n, name in zip(self.counts(), names, strict=True) if n]
        withins = [f"{name} snapshots within {d}" for d, name in
                   zip(self.within_durations(), names[1:], strict=True) if not d.is_zero()]
        text = f"{', '.join(keeps)} snapshots" if keeps else ""
        if withins:
            text = ", ".join(([text] if text else []) + withins)
        if self.tags:
            tags = "[" + " ".join("[" + ", ".join(t) + "]" for t in self.tags) + "]"
            text += (" and " if text else "") + f"all snapshots with tags {tags}"
        if not self.within.is_zero():
            text += (" and " if text else "") + f"all snapshots within {self.within} of the newest"
        return "keep " + text if text else "remove"


@dataclass(slots=True)
class KeepReason:
    """Why a snapshot is kept: the matching rules and the bucket counters left after it."""

    snapshot: Snapshot
    matches: list[str]
    counters: dict[str, int]


@dataclass(slots=True)
class PolicyResult:
    """The outcome for one group: kept and removed snapshots (newest first), and a reason
    for every kept snapshot, in the order of ``keep``."""

    keep: list[Snapshot] = field(default_factory=list)
    remove: list[Snapshot] = field(default_factory=list)
    reasons: list[KeepReason] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _When:
    ns: int
    wall: datetime  # wall clock in the snapshot's own offset
    offset: int


def _when(sn: Snapshot) -> _When:
    ns, offset = sn.time_and_offset
    return _When(ns, _EPOCH + timedelta(microseconds=(ns // 1000) + offset * 1_000_000), offset)


def _add_date(wall: datetime, years: int, months: int, days: int) -> datetime | None:
    """Go's ``t.AddDate``: months overflow into years, days into months; None if the result
    lies before year 1."""
    m0 = wall.month - 1 + months
    year = wall.year + years + m0 // 12
    if year < 1:
        return None
    try:
        first = date(year, m0 % 12 + 1, 1).toordinal()
        day = date.fromordinal(first + wall.day - 1 + days)
    except (ValueError, OverflowError):
        return None
    return datetime.combine(day, wall.time())


def _threshold_ns(latest: _When | None, d: Duration) -> int | None:
    """Return the instant ``latest - d`` in epoch ns; None means "before everything"."""
    if latest is None:
        return None
    shifted = _add_date(latest.wall, -d.years, -d.months, -d.days)
    if shifted is None:
        return None
    shifted -= timedelta(hours=d.hours)
    delta = shifted - _EPOCH
    seconds = delta.days * 86400 + delta.seconds - latest.offset
    return seconds * _NS + delta.microseconds * 1000 + latest.ns % 1000


_BUCKET_KEYS: list[Callable[[_When, int], int]] = [
    lambda w, nr: nr,
    lambda w, nr: ((w.wall.year * 100 + w.wall.month) * 100 + w.wall.day) * 100 + w.wall.hour,
    lambda w, nr: (w.wall.year * 100 + w.wall.month) * 100 + w.wall.day,
    lambda w, nr: w.wall.isocalendar()[0] * 100 + w.wall.isocalendar()[1],
    lambda w, nr: w.wall.year * 100 + w.wall.month,
    lambda w, nr: w.wall.year,
]
_BUCKET_NAMES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"]


def apply_policy(
    snapshots: Iterable[Snapshot],
    policy: ExpirePolicy,
    *,
    now_ns: int | None = None,
    semantics: Semantics = Semantics.CURRENT,
) -> PolicyResult:
    """Given one group of snapshots and a policy, return what to keep and remove, newest
    first (a stable sort by time, so equal times keep the given order).

    ``now_ns`` (default: the clock) decides which snapshots lie in the future; those never
    count as the ``latest`` that ``--keep-within*`` measures from. With RESTIC_0_14
    semantics an empty policy keeps everything (restic's "policy is empty" reason).
    """
    ordered = sorted(snapshots, key=lambda s: _when(s).ns, reverse=True)
    result = PolicyResult()
    if not ordered:
        return result
    current = semantics is Semantics.CURRENT
    if not current and policy.is_empty():
        result.keep = list(ordered)
        result.reasons = [KeepReason(s, ["policy is empty"], {}) for s in ordered]
        return result
    whens = [_when(s) for s in ordered]
    now = time.time_ns() if now_ns is None else now_ns
    past = [w for w in whens if w.ns < now]
    latest = max(past, key=lambda w: w.ns) if past else None
    within_at = None if policy.within.is_zero() else _threshold_ns(latest, policy.within)
    within_buckets = [(d, None if d.is_zero() else _threshold_ns(latest, d))
                      for d in policy.within_durations()]
    counts = policy.counts()
    last_key: list[int | None] = [None] * 6
    last_within: list[int | None] = [None] * 5
    oldest_nr = len(ordered) - 1
    for nr, (sn, w) in enumerate(zip(ordered, whens, strict=True)):
        matches: list[str] = []
        for tags in policy.tags:
            if has_tags(sn, tags):
                matches.append("has tags [" + ", ".join(tags) + "]")
        if not policy.within.is_zero() and (within_at is None or w.ns > within_at):
            matches.append(f"within {policy.within}")
        oldest = current and nr == oldest_nr
        for i, key_of in enumerate(_BUCKET_KEYS):
            if not (counts[i] > 0 or (current and counts[i] == UNLIMITED)):
                continue
            key = key_of(w, nr)
            if key != last_key[i] or oldest:
                prefix = "oldest " if key == last_key[i] else ""
                last_key[i] = key
                if counts[i] > 0:
                    counts[i] -= 1
                matches.append(f"{prefix}{_BUCKET_NAMES[i]} snapshot")
        for j, (d, at) in enumerate(within_buckets):
            if d.is_zero() or not (at is None or w.ns > at):
                continue
            key = _BUCKET_KEYS[j + 1](w, nr)
            if key != last_within[j] or oldest:
                prefix = "oldest " if key == last_within[j] else ""
                last_within[j] = key
                matches.append(f"{prefix}{_BUCKET_NAMES[j + 1]} within {d}")
        if matches:
            result.keep.append(sn)
            counters = {name: n for name, n in zip(_BUCKET_NAMES, counts, strict=True) if n}
            result.reasons.append(KeepReason(sn, matches, counters))
        else:
            result.remove.append(sn)
    return result
