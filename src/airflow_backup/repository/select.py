"""Choose snapshots: filters by host, tag and path; selectors ``latest`` or an id prefix; and
point-in-time selection (``--as-of``: the newest snapshot at or before a time)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from airflow_backup.errors import ConfigError, IntegrityError, SnapshotNotFound
from airflow_backup.repository.forget import has_tags, parse_tag_list
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_ns, parse_ns

__all__ = [
    "SnapshotFilter",
    "find_snapshot",
    "find_snapshot_as_of",
    "parse_as_of",
    "pick_as_of",
    "resolve_snapshot",
    "select_snapshots",
]


@dataclass(slots=True)
class SnapshotFilter:
    """restic's filter semantics.

    ``hosts``: any of them. ``tags``: a list of tag groups, each a comma-separated string whose
    tags must all be present; a snapshot matches if any group matches (an empty tag matches
    snapshots without tags, as in restic). ``paths``: the snapshot must contain all of them.
    """

    hosts: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def matches(self, sn: Snapshot) -> bool:
        """Return whether ``sn`` passes every filter."""
        if self.hosts and sn.hostname not in self.hosts:
            return False
        if self.tags and not any(has_tags(sn, parse_tag_list(g)) for g in self.tags):
            return False
        if self.paths:
            wanted = {os.path.normpath(p) for p in self.paths}
            if not wanted <= {os.path.normpath(p) for p in sn.paths}:
                return False
        return True


def select_snapshots(repo: Repository, flt: SnapshotFilter | None = None,
                     ids: list[str] | None = None) -> list[Snapshot]:
    """Return the snapshots matching ``flt`` (oldest first), or those named by ``ids``
    (``latest`` or id prefixes), in the given order.

    Damaged snapshot files are skipped (with a warning, see
    :meth:`Repository.list_snapshots`, unless ``ids`` names snapshots and not ``latest``),
    except one named by its id: that one is returned as a :meth:`Snapshot.damaged_file`
    stand-in (its ``damaged`` says why), whatever the filters, so that ``forget ID`` and
    ``repair snapshots --forget ID`` can remove it. Raise SnapshotNotFound or ConfigError
    (ambiguous or invalid id)."""
    snaps = repo.list_snapshots(warn=not ids or "latest" in ids)
    if flt is not None:
        snaps = [s for s in snaps if flt.matches(s)]
    if not ids:
        return snaps
    damaged = _damaged(repo)
    return [_pick(snaps, i, damaged) for i in ids]


def find_snapshot(repo: Repository, selector: str, flt: SnapshotFilter | None = None) -> Snapshot:
    """Return the one snapshot ``selector`` names (``latest`` or a unique id prefix) among those
    matching ``flt``. Raise SnapshotNotFound or ConfigError (ambiguous prefix), and
    IntegrityError naming the file if the id names a damaged snapshot file. Other damaged
    files are warned about only when looking for ``latest`` (which they might have been)."""
    snaps = repo.list_snapshots(warn=selector == "latest")
    if flt is not None:
        snaps = [s for s in snaps if flt.matches(s)]
    sn = _pick(snaps, selector, _damaged(repo))
    if sn.damaged:
        raise IntegrityError(sn.damaged)
    return sn


def _damaged(repo: Repository) -> list[Snapshot]:
    """Return stand-ins for the snapshot files the last listing of ``repo`` skipped."""
    return [Snapshot.damaged_file(name, why) for name, why in repo.damaged_snapshots.items()]


def _pick(snaps: list[Snapshot], selector: str, damaged: list[Snapshot] | None = None
          ) -> Snapshot:
    if selector == "latest":
        if not snaps:
            raise SnapshotNotFound("no snapshot found (latest) matching the filters")
        return max(snaps, key=lambda s: (s.time_ns, s.id))
    if not selector or any(c not in "0123456789abcdef" for c in selector.lower()):
        raise ConfigError(f"invalid snapshot id {selector!r}: use 'latest' or a hex id prefix")
    prefix = selector.lower()
    matches = [s for s in snaps if s.id.startswith(prefix)]
    # A damaged file is found by its name (the id) even where filters exclude it: nothing
    # else about it is known.
    matches += [s for s in damaged or [] if s.id.startswith(prefix)]
    if not matches:
        raise SnapshotNotFound(f"no snapshot with id {selector!r}")
    if len(matches) > 1:
        raise ConfigError(f"snapshot id prefix {selector!r} is ambiguous")
    return matches[0]


# ---- point in time -------------------------------------------------------------------------

_LOCAL_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$"
)


def parse_as_of(text: str) -> int:
    """Given a point in time, return it as epoch nanoseconds.

    Accepted: RFC 3339 with an offset (``2024-01-31T23:00:00Z``, ``…+02:00``, up to nine
    fractional digits), or a local time ``2024-01-31 23:00[:00[.fff]]``, or a local date
    ``2024-01-31`` (meaning its first instant, 00:00:00). Raise ConfigError otherwise.
    """
    text = text.strip()
    try:
        return parse_ns(text)[0]
    except ValueError:
        pass
    m = _LOCAL_TIME.match(text)
    if m is None:
        raise ConfigError(f"invalid time {text!r}: use 'YYYY-MM-DD HH:MM:SS' (local time), "
                          "'YYYY-MM-DD', or RFC 3339 such as 2024-01-31T23:00:00Z")
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hour, minute, second = (int(g or 0) for g in m.group(4, 5, 6))
    try:
        local = datetime(year, month, day, hour, minute, second).astimezone()
    except ValueError as exc:
        raise ConfigError(f"invalid time {text!r}: {exc}") from None
    delta = local - datetime(1970, 1, 1, tzinfo=UTC)
    frac = int((m.group(7) or "0").ljust(9, "0"))
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + frac


def pick_as_of(snaps: list[Snapshot], as_of_ns: int) -> Snapshot:
    """Given snapshots and an instant, return the newest snapshot taken at or before it (the
    one with the greatest id among equal times). Raise SnapshotNotFound if every snapshot is
    newer, or there is none."""
    earlier = [s for s in snaps if s.time_ns <= as_of_ns]
    if not earlier:
        raise SnapshotNotFound(f"no snapshot at or before {format_ns(as_of_ns, 0)} "
                               "matching the filters")
    return max(earlier, key=lambda s: (s.time_ns, s.id))


def find_snapshot_as_of(repo: Repository, as_of_ns: int,
                        flt: SnapshotFilter | None = None) -> Snapshot:
    """Return the newest snapshot at or before ``as_of_ns`` among those matching ``flt``.
    Raise SnapshotNotFound if there is none."""
    snaps = repo.list_snapshots()
    if flt is not None:
        snaps = [s for s in snaps if flt.matches(s)]
    return pick_as_of(snaps, as_of_ns)


def resolve_snapshot(repo: Repository, selector: str | None, flt: SnapshotFilter | None = None,
                     as_of: str | None = None) -> Snapshot:
    """Given a selector (``latest``, an id prefix, or None) and an optional ``--as-of`` time,
    return the one snapshot they name. With ``as_of`` the selector must be None or
    ``latest``. Raise ConfigError on a conflict or bad input, SnapshotNotFound if nothing
    matches."""
    if as_of:
        if selector not in (None, "", "latest"):
            raise ConfigError("give either a snapshot id or --as-of, not both")
        return find_snapshot_as_of(repo, parse_as_of(as_of), flt)
    if not selector:
        raise ConfigError("name a snapshot: an id prefix, 'latest', or --as-of TIME")
    return find_snapshot(repo, selector, flt)
