"""RFC 3339 times with nanoseconds, formatted exactly as Go's ``time.RFC3339Nano``.

Python's datetime stops at microseconds, so file times travel as integer nanoseconds since the
epoch plus a UTC offset in seconds. Go trims trailing zeros of the fraction and writes ``Z``
for a zero offset.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["epoch_seconds", "format_ns", "format_time", "local_offset", "parse_ns", "parse_strict",
           "parse_time"]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,  # \d is 0-9 only: int() would also read other scripts' digits
)


def local_offset(epoch_seconds: float) -> int:
    """Return this machine's UTC offset in seconds at the given instant."""
    return time.localtime(epoch_seconds).tm_gmtoff or 0


# Files written together share their second: cache the local-time text of recent seconds.
_LOCAL_SECONDS: dict[int, tuple[str, int]] = {}


def format_ns(ns: int, offset: int | None = None) -> str:
    """Format epoch nanoseconds as RFC 3339 with a trimmed fraction, in ``offset`` (seconds
    east of UTC; local time when None)."""
    sec, frac = divmod(ns, 1_000_000_000)
    if offset is None:
        cached = _LOCAL_SECONDS.get(sec)
        if cached is not None:
            return _finish(cached[0], frac, cached[1])
        try:
            tm = time.localtime(sec)
        except (OverflowError, OSError, ValueError):
            tm = None
        if tm is not None and 1 <= tm.tm_year <= 9999:
            offset = tm.tm_gmtoff or 0
            text = (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"
                    f"T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")
            if len(_LOCAL_SECONDS) >= 8192:
                _LOCAL_SECONDS.clear()
            _LOCAL_SECONDS[sec] = (text, offset)
            return _finish(text, frac, offset)
        offset = 0
    dt = datetime(1970, 1, 1) + timedelta(seconds=sec + offset)
    text = (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
            f"T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}")
    return _finish(text, frac, offset)


def _finish(text: str, frac: int, offset: int) -> str:
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def format_time(dt: datetime) -> str:
    """Format an aware datetime as Go's RFC3339Nano."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    utcoffset = dt.utcoffset()
    offset = int(utcoffset.total_seconds()) if utcoffset is not None else 0
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return format_ns(ns, offset)


def parse_ns(text: str) -> tuple[int, int]:
    """Parse RFC 3339 (with up to nine fractional digits); return (epoch ns, offset seconds).

    Raise ValueError if ``text`` is not RFC 3339 or names no real date and time.
    """
    # A restore parses every file's times: integer arithmetic on the matched fields, not
    # datetime objects, which are slower.
    m = _RFC3339.match(text) or _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    h, mi, sec = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or sec > 59:
        raise ValueError(f"not a time of day: {text!r}")
    offset = 0
    if tz != "Z" and tz != "z":
        tz_h, tz_m = int(tz[1:3]), int(tz[4:6])
        if tz_h > 23 or tz_m > 59:  # as Go's time.Parse
            raise ValueError(f"time zone offset out of range: {text!r}")
        offset = tz_h * 3600 + tz_m * 60
        if tz[0] == "-":
            offset = -offset
    seconds = _epoch_day(int(year), int(month), int(day)) * 86400 + h * 3600 + mi * 60 + sec
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return (seconds - offset) * 1_000_000_000 + nanos, offset


def epoch_seconds(text: str | None) -> float | None:
    """Return the time ``text`` (restic's format, as :func:`parse_ns` reads it) as seconds
    since the epoch, or None if it is empty or unreadable."""
    if not text:
        return None
    try:
        return parse_ns(text)[0] / 1e9
    except ValueError:
        return None


def parse_strict(text: str) -> tuple[int, int]:
    """Like :func:`parse_ns`, for a time stored in repository metadata (a snapshot's or key
    file's): the text must be RFC 3339 exactly, without surrounding space, and name an
    instant that is a representable date in every time zone (2 January of year 1 to
    30 December 9999, UTC), so that showing it in local time cannot fail. Raise ValueError
    otherwise."""
    if text != text.strip():
        raise ValueError("not an RFC 3339 time: surrounding space")
    ns, offset = parse_ns(text)
    if not _MIN_STRICT_NS <= ns <= _MAX_STRICT_NS:
        raise ValueError("time out of range (years 1 to 9999)")
    return ns, offset


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=1024)
def _epoch_day(year: int, month: int, day: int) -> int:
    """Return days since 1970-01-01 of a date. Raise ValueError if there is no such date."""
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 into an aware datetime (sub-microsecond digits are dropped)."""
    ns, offset = parse_ns(text)
    tz = UTC if offset == 0 else timezone(timedelta(seconds=offset))
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).astimezone(tz)


_MIN_STRICT_NS = parse_ns("0001-01-02T00:00:00Z")[0]
_MAX_STRICT_NS = parse_ns("9999-12-30T23:59:59.999999999Z")[0]
