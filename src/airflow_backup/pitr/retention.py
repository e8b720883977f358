"""WAL-aware retention: keep the newest base backups and exactly the WAL they (and
point-in-time recovery from them) need; forget the rest with the ordinary ``forget`` step.

:func:`plan_pitr_retention` (pure, over catalogue entries) decides:

- **Base backups**: restic's rules (:func:`~airflow_backup.repository.forget.apply_policy`,
  current semantics) with ``--keep-last N`` (``keep_base``) and ``--keep-within D``
  (``keep_within``, measured back from the newest base backup's snapshot time, as restic
  does) over the base-backup snapshots alone; the newest is always kept, a policy that
  keeps none is refused.
- **WAL**: a segment, ``.partial`` or ``.backup`` file of timeline ``T`` is forgotten only
  when its segment number is below the *floor* of ``T``: the lowest start segment of the
  kept base backups whose timeline is an ancestor of ``T``, ``T`` itself or a descendant
  of ``T`` (per the ``.history`` files). Recovery from a kept backup replays forward from
  its start segment on its own timeline and its descendants; nothing it reads lies below
  the floor, so the WAL a kept backup needs, and all the WAL after it, stays. A timeline no
  kept backup is related to (or whose ``.history`` file is missing, so that relation cannot
  be known) keeps all its WAL. ``.history`` files are never forgotten, nor any file whose
  name cannot be read.

``pg forget`` (:mod:`airflow_backup.operations.pitr_retention`) takes the decision under a
shared lock and hands the snapshot ids to the one retention operation (as ``forget ID...``
does), which removes them under an exclusive lock and runs ``prune`` when asked. What may
change in between is harmless: a base backup or WAL file written meanwhile is newer than
every kept base backup's start, so it is above every floor.

No printing, and no removal here: this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.pitr.catalog import CatalogEntry
from airflow_backup.pitr.gaps import (
    Timelines,
    backup_segments,
    choose_segment_size,
    segment_name,
    segment_number,
)
from airflow_backup.pitr.names import parse_wal_name
from airflow_backup.repository.forget import Duration, ExpirePolicy, apply_policy
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["PitrRetentionPlan", "PitrRetentionPolicy",
           "plan_pitr_retention"]


@dataclass(frozen=True, slots=True)
class PitrRetentionPolicy:
    """Which base backups to keep: the newest ``keep_base`` and/or those within
    ``keep_within`` of the newest. Raise ConfigError if neither is set or the count is
    negative."""

    keep_base: int = 0
    keep_within: Duration = field(default_factory=Duration)

    def __post_init__(self) -> None:
        if self.keep_base < 0:
            raise ConfigError("--keep-base must be 1 or more")
        if self.keep_base == 0 and self.keep_within.is_zero():
            raise ConfigError("pg forget needs --keep-base N (N >= 1) and/or "
                              "--keep-within DURATION")

    def describe(self) -> str:
        """Return a one-line description of the policy."""
        parts = []
        if self.keep_base:
            parts.append(f"the newest {self.keep_base} base backup(s)")
        if not self.keep_within.is_zero():
            parts.append(f"base backups within {self.keep_within} of the newest")
        return "keep " + " and ".join(parts) + ", and the WAL they need"


@dataclass(frozen=True, slots=True)
class PitrRetentionPlan:
    """The decision: base backups and WAL files kept and forgotten (oldest first), and per
    timeline the first segment kept (``floors``; a timeline absent keeps everything)."""

    keep_bases: tuple[CatalogEntry, ...]
    forget_bases: tuple[CatalogEntry, ...]
    keep_wal: tuple[CatalogEntry, ...]
    forget_wal: tuple[CatalogEntry, ...]
    floors: Mapping[int, str]
    segment_size: int

    def forget_ids(self) -> tuple[str, ...]:
        """Return the snapshot ids to forget: base backups, then WAL."""
        return tuple(e.snapshot_id for e in (*self.forget_bases, *self.forget_wal))

    def to_json(self) -> JSONObject:
        """Return the plan as a JSON object."""
        return {"keep_base_backups": [e.snapshot_id for e in self.keep_bases],
                "forget_base_backups": [e.snapshot_id for e in self.forget_bases],
                "keep_wal": len(self.keep_wal),
                "forget_wal": [{"snapshot_id": e.snapshot_id, "name": e.name}
                               for e in self.forget_wal],
                "first_wal_kept": {f"{t:08X}": n for t, n in sorted(self.floors.items())},
                "wal_segment_size": self.segment_size}


def _stand_in(entry: CatalogEntry) -> Snapshot:
    """A snapshot with just the id and time of ``entry``, for apply_policy."""
    return Snapshot(time=entry.time, tree=b"", paths=[], id=entry.snapshot_id)


def _timeline_of(entry: CatalogEntry) -> int:
    for key in ("stop_timeline", "timeline"):
        try:
            return int(str(entry.meta.get(key)))
        except ValueError:
            continue
    return 1


def plan_pitr_retention(backups: Sequence[CatalogEntry], wal: Sequence[CatalogEntry],
                        histories: Mapping[int, Mapping[int, int]],
                        policy: PitrRetentionPolicy, *, segment_size: int | None = None,
                        now_ns: int | None = None) -> PitrRetentionPlan:
    """Decide what to keep (see the module docstring). ``backups`` and ``wal`` are the
    catalogue entries, ``histories`` the parsed ``.history`` files, ``segment_size`` the
    ``--wal-segsize`` (what the base backups record wins). Raise ConfigError if there is no
    base backup (nothing to anchor the WAL to), or for an invalid segment size."""
    if not backups:
        raise ConfigError("no base backup in the repository: pg forget keeps WAL relative "
                          "to base backups (run 'pg basebackup' first)")
    size, _ = choose_segment_size(backups, segment_size)
    result = apply_policy([_stand_in(b) for b in backups],
                          ExpirePolicy(last=policy.keep_base, within=policy.keep_within),
                          now_ns=now_ns)
    kept_ids = {s.id for s in result.keep}
    if not kept_ids:  # apply_policy keeps the newest for any non-empty policy; be sure
        raise ConfigError("refusing to forget every base backup")
    keep_bases = tuple(b for b in backups if b.snapshot_id in kept_ids)
    forget_bases = tuple(b for b in backups if b.snapshot_id not in kept_ids)

    tls = Timelines(histories)
    starts: list[tuple[int, int]] = []  # (timeline, start segment) of kept backups
    for b in keep_bases:
        span = backup_segments(b, size)
        if span is None:
            # A kept backup whose start is unknown: keep all WAL rather than guess.
            return PitrRetentionPlan(keep_bases, forget_bases, tuple(wal), (), {}, size)
        starts.append((_timeline_of(b), span[0]))

    floors: dict[int, int] = {}

    def floor(tli: int) -> int | None:
        if tli not in floors:
            related = [s for t, s in starts if tls.known(tli) and tls.related(t, tli)]
            if not related:
                return None
            floors[tli] = min(related)
        return floors[tli]

    keep_wal: list[CatalogEntry] = []
    forget_wal: list[CatalogEntry] = []
    for e in wal:
        try:
            w = parse_wal_name(e.name)
        except ConfigError:
            keep_wal.append(e)
            continue
        if w.kind == "history":
            keep_wal.append(e)
            continue
        limit = floor(w.timeline)
        if limit is not None and segment_number(w.name, size) < limit:
            forget_wal.append(e)
        else:
            keep_wal.append(e)
    names = {t: segment_name(t, s, size) for t, s in floors.items()}
    return PitrRetentionPlan(keep_bases, forget_bases, tuple(keep_wal), tuple(forget_wal),
                             names, size)
