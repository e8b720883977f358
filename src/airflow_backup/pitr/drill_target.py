"""Where a PITR restore drill recovers to: a random time in the recent recoverable window.

The window comes from the archive check (:func:`airflow_backup.pitr.gaps.check_archive`):
its upper end is the newest archived WAL reached without a gap. A time target needs a base
backup that ended before it, so the drill's range starts at the stop time of the newest
restorable base backup that ended before that upper end; with ``within`` (seconds) it starts
instead ``within`` seconds before the upper end, but never before the window's start nor
before the oldest restorable base backup's stop. Pure functions: no repository, no clock
unless given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from airflow_backup.errors import SnapshotNotFound, WalGap
from airflow_backup.pitr.gaps import ArchiveReport
from airflow_backup.repository.timefmt import epoch_seconds

__all__ = ["DrillRange", "drill_range", "format_target"]


@dataclass(frozen=True, slots=True)
class DrillRange:
    """The range a drill's target time is drawn from (epoch seconds) and the draw."""

    low: float
    high: float
    target: float

    def to_json(self) -> dict[str, str]:
        """Return the range and target as PostgreSQL-readable times."""
        return {"from": format_target(self.low), "to": format_target(self.high),
                "target": format_target(self.target)}


def drill_range(report: ArchiveReport, within: float | None = None,
                rng: random.Random | None = None, at: float | None = None) -> DrillRange:
    """Return the range and a random target for a drill of the archive ``report`` describes
    (module docstring); with ``at`` (epoch seconds) that target instead. Raise WalGap if the
    report has a problem (a gap, a base backup that cannot be restored, a missing
    ``.history``), SnapshotNotFound if nothing is recoverable (no restorable base backup
    ended before the newest archived WAL) or ``at`` is outside the recoverable window."""
    problems = report.problems()
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise WalGap(f"WAL archive check failed: {problems[0]}{more}")
    high = epoch_seconds(report.latest)
    stops = sorted(s for s in (epoch_seconds(b.stop_time) for b in report.backups if b.restorable)
                   if s is not None and high is not None and s <= high)
    if high is None or not stops:
        raise SnapshotNotFound("nothing to recover to: no restorable base backup ended "
                               "before the newest archived WAL (is WAL being archived?)")
    low = stops[-1]
    if within is not None:
        earliest = epoch_seconds(report.earliest) or stops[0]
        low = max(high - within, earliest, stops[0])
    low = min(low, high)
    if at is not None:
        if not stops[0] <= at <= high:
            raise SnapshotNotFound(f"{format_target(at)} is outside the recoverable window "
                                   f"{format_target(stops[0])} .. {format_target(high)}")
        return DrillRange(stops[0], high, at)
    target = (rng or random.SystemRandom()).uniform(low, high)
    return DrillRange(low, high, target)


def format_target(seconds: float) -> str:
    """Return epoch ``seconds`` as a ``recovery_target_time`` (UTC, microseconds)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
