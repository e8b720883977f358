"""Is the WAL archive complete? Which base backups can be restored, where are the holes,
and what window of time can be recovered.

WAL segment arithmetic follows PostgreSQL: a segment file is named ``TTTTTTTTXXXXXXXXYYYYYYYY``
(timeline, then the segment number ``segno`` split in two: ``XXXXXXXX = segno // per`` and
``YYYYYYYY = segno % per`` with ``per = 2**32 // segment size``, 256 for 16 MiB segments); the
segment holding LSN ``L`` is ``L // segment size``.

Timelines (:class:`Timelines`): ``TTTTTTTT.history`` lists every ancestor of timeline ``T``
and the LSN at which each was left. Along the *lineage* of ``T`` (timeline 1 → … → ``T``)
each timeline owns the segments from the segment of the LSN where it began (its parent's
switch point; 0 for the first) on; recovery reads segment ``s`` from the newest timeline of
the lineage that began at or before ``s`` (PostgreSQL's ``XLogFileReadAnyTLI``). So after a
switch inside segment ``k`` the lineage continues with ``k`` on the new timeline.

:func:`check_wal_archive` (pure, over catalogue entries) checks:

- every base backup: the segments from the one holding its start LSN to the one holding its
  last byte (``stop LSN - 1``), along the lineage of its stop timeline, are archived; if not
  it cannot be restored at all;
- every timeline with archived segments: along its lineage, every segment from the start of
  the oldest base backup that can reach it (taken on it, or on an ancestor and ended no later
  than the switch away from that ancestor) through its newest archived segment is archived;
- every timeline above 1 that has segments or base backups has its ``.history`` file.

A gap (a missing segment in those ranges), a base backup that cannot be restored, a missing
``.history`` file, or having no restorable base backup at all is a *problem*: recovery to
some moment the archive claims to cover is impossible. Segments no base backup can reach
are only a *warning*. ``.partial`` and ``.backup`` files never fill a gap (recovery does not
read them through ``restore_command``).

The recoverable window runs from the stop time of the oldest restorable base backup to the
snapshot time (the moment it was archived: an upper bound of the WAL it holds) of the last
segment reached without a gap from the newest restorable base backup, on whichever timeline
that is latest. Gaps between these two ends are holes in the window and listed as such.

No printing; the CLI (``pg check``) renders :class:`ArchiveReport`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.pitr.catalog import CatalogEntry, PitrCatalog
from airflow_backup.pitr.names import WalName, parse_lsn, parse_wal_name
from airflow_backup.pitr.recovery import parse_history
from airflow_backup.pitr.wal import read_wal
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.timefmt import parse_ns

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "ArchiveReport",
    "BackupStatus",
    "SegmentRange",
    "TimelineStatus",
    "Timelines",
    "backup_segments",
    "check_archive",
    "check_wal_archive",
    "choose_segment_size",
    "parse_segment_size",
    "read_histories",
    "recorded_segment_size",
    "segment_name",
    "segment_number",
]

DEFAULT_SEGMENT_SIZE = 16 << 20
#: The sizes initdb --wal-segsize accepts: powers of two from 1 MiB to 1 GiB.
_SIZES = tuple(1 << n for n in range(20, 31))
_SIZE_TEXT = re.compile(r"^\s*(\d+)\s*(|k|kb|kib|m|mb|mib|g|gb|gib|b)\s*$", re.IGNORECASE)


def _check_size(size: int) -> int:
    if size not in _SIZES:
        raise ConfigError(f"WAL segment size {size} is not a power of two from 1 MiB to 1 GiB")
    return size


def parse_segment_size(text: str) -> int:
    """Return the WAL segment size in bytes from ``--wal-segsize`` text: a number of MiB as
    initdb takes it (``16``, ``64``), or with a unit (``16MB``, ``1GiB``, ``16777216b``).
    Raise ConfigError unless it is a power of two from 1 MiB to 1 GiB."""
    m = _SIZE_TEXT.match(text)
    if not m:
        raise ConfigError(f"--wal-segsize {text!r}: use a size in MiB like 16 or 64MB")
    unit = m[2].lower()[:1]
    scale = {"": 1 << 20, "m": 1 << 20, "k": 1 << 10, "g": 1 << 30, "b": 1}[unit]
    return _check_size(int(m[1]) * scale)


def _per(size: int) -> int:
    return 0x100000000 // size


def segment_name(timeline: int, segno: int, size: int) -> str:
    """Return the file name of segment ``segno`` on ``timeline`` for ``size``-byte segments."""
    per = _per(size)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def segment_number(name: str, size: int) -> int:
    """Return the segment number of a segment (or ``.partial``/``.backup``) file name."""
    return int(name[8:16], 16) * _per(size) + int(name[16:24], 16)


def _lsn_field(meta: JSONObject, key: str) -> int | None:
    value = meta.get(key)
    if not isinstance(value, str):
        return None
    try:
        return parse_lsn(value)
    except ConfigError:
        return None


def recorded_segment_size(backups: Iterable[CatalogEntry]) -> int | None:
    """Return the WAL segment size the base backups record, or None if none does.

    A base backup records it as ``wal_segment_size`` (bytes) when its writer knows it;
    otherwise it is derived from ``start_wal`` (the file name of the segment holding the
    start LSN, from ``backup_label``) and ``start_lsn`` when exactly one size fits.
    Raise ConfigError if the base backups disagree."""
    found: set[int] = set()
    for b in backups:
        given = b.meta.get("wal_segment_size")
        if isinstance(given, int) and given in _SIZES:
            found.add(given)
            continue
        start, name = _lsn_field(b.meta, "start_lsn"), b.meta.get("start_wal")
        if start is None or not isinstance(name, str) or len(name) != 24:
            continue
        try:
            tli = int(name[:8], 16)
        except ValueError:
            continue
        fits = [s for s in _SIZES if segment_name(tli, start // s, s) == name.upper()]
        if len(fits) == 1:
            found.add(fits[0])
    if len(found) > 1:
        raise ConfigError("the base backups record different WAL segment sizes: "
                          + ", ".join(str(s) for s in sorted(found)))
    return found.pop() if found else None


def choose_segment_size(backups: Iterable[CatalogEntry], given: int | None
                        ) -> tuple[int, str]:
    """Return (the WAL segment size to use, where it came from: ``base backup``, ``option``
    or ``default``). What the base backups record wins; ``given`` (``--wal-segsize``) must
    then agree with it. Raise ConfigError if it does not."""
    recorded = recorded_segment_size(backups)
    if recorded is not None:
        if given is not None and given != recorded:
            raise ConfigError(f"--wal-segsize {given} contradicts the segment size the base "
                              f"backups record ({recorded} bytes)")
        return recorded, "base backup"
    if given is not None:
        return _check_size(given), "option"
    return DEFAULT_SEGMENT_SIZE, "default"


@dataclass(frozen=True, slots=True)
class Timelines:
    """The timeline histories known: ``histories[T]`` is ``{ancestor: LSN where it was
    left}`` as read from ``TTTTTTTT.history`` (:func:`~.recovery.parse_history`)."""

    histories: Mapping[int, Mapping[int, int]] = field(default_factory=dict)

    def known(self, timeline: int) -> bool:
        """Return whether the lineage of ``timeline`` is known (1, or its history archived)."""
        return timeline == 1 or timeline in self.histories

    def lineage(self, timeline: int) -> dict[int, int]:
        """Return ``{timeline: LSN where it began}`` for ``timeline`` and its ancestors (the
        first begins at 0). Without its history file, only ``{timeline: 0}``."""
        history = self.histories.get(timeline, {})
        out: dict[int, int] = {}
        begin = 0
        for ancestor in sorted(history):
            out[ancestor] = begin
            begin = history[ancestor]
        out[timeline] = begin
        return out

    def related(self, a: int, b: int) -> bool:
        """Return whether one of the timelines is an ancestor of (or is) the other."""
        return a in self.lineage(b) or b in self.lineage(a)

    def reaches(self, backup: CatalogEntry, timeline: int) -> bool:
        """Return whether recovery from ``backup`` can follow ``timeline``: the backup was
        taken on it, or on an ancestor and ended no later than the switch away from it."""
        own = _stop_timeline(backup)
        if own == timeline:
            return True
        history = self.histories.get(timeline, {})
        switch = history.get(own)
        stop = _lsn_field(backup.meta, "stop_lsn")
        return switch is not None and stop is not None and stop <= switch


def _owner(lineage: Mapping[int, int], segno: int, size: int) -> int:
    """Return the timeline of ``lineage`` whose file recovery reads for segment ``segno``."""
    best = min(lineage)
    for tli, begin in lineage.items():
        if begin // size <= segno and tli > best:
            best = tli
    return best


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _stop_timeline(b: CatalogEntry) -> int:
    return _int(b.meta.get("stop_timeline", b.meta.get("timeline", 1)), 1)


def backup_segments(backup: CatalogEntry, size: int) -> tuple[int, int] | None:
    """Return (first, last) segment numbers of the WAL ``backup`` needs to be consistent:
    the segment holding its start LSN through the one holding its last byte (``stop LSN -
    1``); None if its metadata has no readable LSNs."""
    start = _lsn_field(backup.meta, "start_lsn")
    stop = _lsn_field(backup.meta, "stop_lsn")
    if start is None or stop is None:
        return None
    first = start // size
    return first, max(first, (stop - 1) // size)


@dataclass(frozen=True, slots=True)
class SegmentRange:
    """Consecutive missing segments ``first`` .. ``last`` (file names) on ``timeline``."""

    timeline: int
    first: str
    last: str
    count: int

    def to_json(self) -> JSONObject:
        """Return the range as a JSON object."""
        return {"timeline": self.timeline, "first": self.first, "last": self.last,
                "count": self.count}

    def __str__(self) -> str:
        span = self.first if self.count == 1 else f"{self.first}..{self.last}"
        return f"{span} ({self.count} segment{'s' if self.count != 1 else ''}, " \
               f"timeline {self.timeline})"


def _ranges(missing: Iterable[tuple[int, int]], size: int) -> tuple[SegmentRange, ...]:
    out: list[SegmentRange] = []
    run: list[tuple[int, int]] = []
    for tli, segno in sorted(set(missing)):
        if run and (tli != run[-1][0] or segno != run[-1][1] + 1):
            out.append(SegmentRange(run[0][0], segment_name(*run[0], size),
                                    segment_name(*run[-1], size), len(run)))
            run = []
        run.append((tli, segno))
    if run:
        out.append(SegmentRange(run[0][0], segment_name(*run[0], size),
                                segment_name(*run[-1], size), len(run)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """One base backup: the WAL it needs (``first_wal``..``last_wal``) and what of it is
    missing; ``restorable`` when nothing is."""

    snapshot_id: str
    timeline: int
    first_wal: str
    last_wal: str
    stop_time: str
    missing: tuple[SegmentRange, ...] = ()
    readable: bool = True

    @property
    def restorable(self) -> bool:
        """Return whether all the WAL this backup needs is archived."""
        return self.readable and not self.missing

    def to_json(self) -> JSONObject:
        """Return the status as a JSON object."""
        return {"snapshot_id": self.snapshot_id, "timeline": self.timeline,
                "first_wal": self.first_wal, "last_wal": self.last_wal,
                "stop_time": self.stop_time, "restorable": self.restorable,
                "missing": [r.to_json() for r in self.missing]}


@dataclass(frozen=True, slots=True)
class TimelineStatus:
    """One timeline with archived segments: its parent and where it began (None for a
    timeline without a known parent), the range checked (``checked_from`` is None when no
    base backup reaches it), its newest segment and how many segments it has."""

    timeline: int
    parent: int | None
    begins_at: str | None
    checked_from: str | None
    newest: str
    segments: int

    def to_json(self) -> JSONObject:
        """Return the status as a JSON object."""
        return {"timeline": self.timeline, "parent": self.parent,
                "begins_at": self.begins_at, "checked_from": self.checked_from,
                "newest": self.newest, "segments": self.segments}


@dataclass(frozen=True, slots=True)
class ArchiveReport:
    """What :func:`check_wal_archive` found (see the module docstring)."""

    segment_size: int
    segment_size_source: str
    backups: tuple[BackupStatus, ...] = ()
    timelines: tuple[TimelineStatus, ...] = ()
    gaps: tuple[SegmentRange, ...] = ()
    missing_histories: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    earliest: str | None = None
    latest: str | None = None
    latest_timeline: int | None = None
    latest_segment: str | None = None

    @property
    def ok(self) -> bool:
        """Return whether nothing breaks recoverability: a restorable base backup exists,
        every base backup is restorable, no gaps, no missing ``.history`` file."""
        return (any(b.restorable for b in self.backups)
                and all(b.restorable for b in self.backups)
                and not self.gaps and not self.missing_histories)

    def problems(self) -> list[str]:
        """Return one line per problem that breaks recoverability (empty when :attr:`ok`)."""
        out: list[str] = []
        if not self.backups:
            out.append("no base backup: nothing is recoverable (run 'pg basebackup')")
        for b in self.backups:
            if not b.readable:
                out.append(f"base backup {b.snapshot_id[:8]} has no readable start/stop LSN")
            elif b.missing:
                out.append(f"base backup {b.snapshot_id[:8]} cannot be restored: WAL missing "
                           + ", ".join(str(r) for r in b.missing))
        if self.backups and not any(b.restorable for b in self.backups):
            out.append("no base backup can be restored")
        for r in self.gaps:
            out.append(f"gap in the WAL archive: {r}")
        for tli in self.missing_histories:
            out.append(f"timeline {tli}: {tli:08X}.history is not archived (the switch to "
                       "it cannot be followed)")
        return out

    def to_json(self) -> JSONObject:
        """Return the report as a JSON object (``ok``, ``problems`` and the details)."""
        return {"ok": self.ok, "problems": list(self.problems()),
                "warnings": list(self.warnings),
                "wal_segment_size": self.segment_size,
                "wal_segment_size_source": self.segment_size_source,
                "recoverable_window": {"earliest": self.earliest, "latest": self.latest,
                                       "timeline": self.latest_timeline,
                                       "last_segment": self.latest_segment},
                "gaps": [g.to_json() for g in self.gaps],
                "missing_histories": [f"{t:08X}.history" for t in self.missing_histories],
                "base_backups": [b.to_json() for b in self.backups],
                "timelines": [t.to_json() for t in self.timelines]}


def _parsed(entry: CatalogEntry) -> WalName | None:
    try:
        return parse_wal_name(entry.name)
    except ConfigError:
        return None


def _time_ns(text: str) -> int:
    try:
        return parse_ns(text)[0]
    except ValueError:
        return 0


def check_wal_archive(backups: Sequence[CatalogEntry], wal: Sequence[CatalogEntry],
                      histories: Mapping[int, Mapping[int, int]], *,
                      segment_size: int | None = None) -> ArchiveReport:
    """Check the archive described by the catalogue entries ``backups`` (kind
    ``basebackup``) and ``wal`` (kind ``wal``) and the parsed ``.history`` files
    ``histories`` (see the module docstring); return the report. ``segment_size`` is
    ``--wal-segsize`` (see :func:`choose_segment_size`). Raise ConfigError if the segment
    size is invalid or contradicts the base backups."""
    size, source = choose_segment_size(backups, segment_size)
    tls = Timelines(histories)
    present: dict[tuple[int, int], CatalogEntry] = {}
    for e in wal:
        w = _parsed(e)
        if w is None:
            continue
        if w.kind == "segment":
            present.setdefault((w.timeline, segment_number(w.name, size)), e)

    statuses: list[BackupStatus] = []
    missing_all: set[tuple[int, int]] = set()
    spans: dict[str, tuple[int, int]] = {}
    for b in backups:
        tli = _stop_timeline(b)
        span = backup_segments(b, size)
        stop_time = str(b.meta.get("stop_time", ""))
        if span is None:
            statuses.append(BackupStatus(b.snapshot_id, tli, "", "", stop_time, readable=False))
            continue
        spans[b.snapshot_id] = span
        lineage = tls.lineage(tli)
        owned = [(_owner(lineage, s, size), s) for s in range(span[0], span[1] + 1)]
        missing = [k for k in owned if k not in present]
        missing_all.update(missing)
        statuses.append(BackupStatus(b.snapshot_id, tli, segment_name(*owned[0], size),
                                     segment_name(*owned[-1], size), stop_time,
                                     _ranges(missing, size)))

    own: dict[int, list[int]] = {}
    for tli, segno in present:
        own.setdefault(tli, []).append(segno)
    needs_history = {t for t in own if t > 1} | {_stop_timeline(b) for b in backups
                                                 if _stop_timeline(b) > 1}
    missing_histories = tuple(sorted(t for t in needs_history
                                     if t not in histories))
    warnings: list[str] = []
    timelines: list[TimelineStatus] = []
    best: tuple[int, int, int, str] | None = None  # (time ns, timeline, segno, time)
    by_id = {b.snapshot_id: b for b in backups}
    restorable = [by_id[s.snapshot_id] for s in statuses if s.restorable]
    for tli in sorted(own):
        lineage = tls.lineage(tli)
        newest = max(own[tli])
        reaching = [b for b in backups if b.snapshot_id in spans and tls.reaches(b, tli)]
        parent = max((t for t in lineage if t != tli), default=None)
        begins = segment_name(tli, lineage[tli] // size, size) if parent is not None else None
        start = min((spans[b.snapshot_id][0] for b in reaching), default=None)
        timelines.append(TimelineStatus(
            tli, parent, begins,
            segment_name(_owner(lineage, start, size), start, size) if start is not None
            else None,
            segment_name(tli, newest, size), len(own[tli])))
        if start is None:
            warnings.append(f"timeline {tli}: no base backup reaches it; its {len(own[tli])} "
                            "archived segment(s) cannot be used for recovery")
            continue
        for segno in range(start, newest + 1):
            key = (_owner(lineage, segno, size), segno)
            if key not in present:
                missing_all.add(key)
        # How far recovery gets without a gap, from the newest restorable backup reaching it.
        usable = [b for b in restorable if tls.reaches(b, tli)]
        if not usable:
            continue
        from_seg = max(spans[b.snapshot_id][0] for b in usable)
        segno = from_seg
        while segno < newest and (_owner(lineage, segno + 1, size), segno + 1) in present:
            segno += 1
        last = present.get((_owner(lineage, segno, size), segno))
        if last is None:
            continue
        candidate = (_time_ns(last.time), tli, segno, last.time)
        if best is None or candidate[:3] > best[:3]:
            best = candidate

    earliest = None
    if restorable:
        first = min(restorable, key=lambda b: _time_ns(str(b.meta.get("stop_time", ""))))
        earliest = str(first.meta.get("stop_time", ""))
    latest_segment = None
    if best is not None:
        lineage = tls.lineage(best[1])
        latest_segment = segment_name(_owner(lineage, best[2], size), best[2], size)
    return ArchiveReport(
        segment_size=size, segment_size_source=source, backups=tuple(statuses),
        timelines=tuple(timelines), gaps=_ranges(missing_all, size),
        missing_histories=missing_histories, warnings=tuple(warnings), earliest=earliest,
        latest=best[3] if best is not None else None,
        latest_timeline=best[1] if best is not None else None, latest_segment=latest_segment)


def read_histories(repo: Repository, catalog: PitrCatalog) -> dict[int, dict[int, int]]:
    """Return ``{timeline: parsed history}`` for every ``.history`` file in the (refreshed)
    catalogue, each read from the repository and verified against its recorded SHA-256.
    Raise IntegrityError for a damaged one, ConfigError for one that cannot be parsed."""
    out: dict[int, dict[int, int]] = {}
    for e in catalog.entries("wal"):
        w = _parsed(e)
        if w is not None and w.kind == "history" and w.timeline not in out:
            text = read_wal(repo, catalog, w.name).decode("utf-8", "replace")
            out[w.timeline] = parse_history(text)
    return out


def check_archive(repo: Repository, catalog: PitrCatalog, *,
                  segment_size: int | None = None) -> ArchiveReport:
    """Refresh ``catalog``, read the ``.history`` files and check the archive (see
    :func:`check_wal_archive`); the caller holds a (shared) lock. Raise ConfigError,
    IntegrityError (a damaged ``.history`` file) or a storage error."""
    catalog.refresh()
    histories = read_histories(repo, catalog)
    return check_wal_archive(catalog.entries("basebackup"), catalog.entries("wal"),
                             histories, segment_size=segment_size)
