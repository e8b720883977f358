"""What the Backups page shows: every job's state, its snapshot timeline, its drill history
and its repositories' health and size, read from the repositories through a cache.

:class:`SnapshotCache` keeps, per repository, the opened repository (its key is derived once)
and every snapshot it has read, by id. A refresh lists the snapshot files (one listing) and
loads only the files it has not seen — snapshots are immutable — so a page with a thousand
snapshots per job costs one listing per repository once warm, and nothing at all within
``ttl`` seconds of the last refresh. Nothing here takes a repository lock: listing and reading
snapshot files is what restic does under ``--no-lock``, so a page view never holds up a
backup or prune.

:func:`job_overview` turns one job's snapshots into its status (the same
:func:`~airflow_backup.operations.status.job_status` that ``status``, the metrics and the RPO
watch use), its :class:`JobState` and its timelines. Only locations without credentials and
snapshot metadata are returned: never a password or a URL's secrets.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from airflow_backup.errors import BackupError, NotFound, describe
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.backup import DEGRADED_TAG
from airflow_backup.operations.spec import RepositorySpec, open_repository
from airflow_backup.operations.status import (
    JobStatus,
    JobWatch,
    drill_record,
    format_age,
    job_status,
)
from airflow_backup.operations.tags import is_backup_of, is_drill_of
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.base import FileType

__all__ = ["DrillPoint", "JobOverview", "JobState", "RepositoryInfo", "SnapshotCache",
           "SnapshotPoint", "job_overview", "job_state"]

#: The repository files whose sizes make up its stored size (as restic's raw data plus its
#: metadata: packs, indexes, snapshots).
_SIZED = (FileType.DATA, FileType.INDEX, FileType.SNAPSHOT)


class JobState(enum.StrEnum):
    """A job's state at a glance, from best to worst. ``failed``: its last backup run
    failed (known to the front end, e.g. Airflow's DAG runs); ``rpo_breached``: its newest
    backup is older than its RPO (or it has none); ``degraded``: its newest backup landed in
    a fallback repository or is partial; ``drill_stale``: no drill within ``drill.max_age``
    or the last drill failed."""

    OK = "ok"
    DRILL_STALE = "drill_stale"
    DEGRADED = "degraded"
    RPO_BREACHED = "rpo_breached"
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """Return how bad the state is (0 for ok)."""
        return list(JobState).index(self)


@dataclass(frozen=True, slots=True)
class SnapshotPoint:
    """One backup of a job on its timeline. ``size``: bytes the backup covered (restic's
    ``total_bytes_processed``); ``added``: bytes it stored (``data_added_packed``); None
    for snapshots written without a summary (restic < 0.17)."""

    id: str
    time: float
    repository: str
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    hostname: str
    size: int | None = None
    files: int | None = None
    added: int | None = None
    degraded: bool = False
    partial: bool = False


@dataclass(frozen=True, slots=True)
class DrillPoint:
    """One restore drill of a job: when, whether it passed, its measured RTO."""

    id: str
    time: float
    repository: str
    ok: bool
    rto: float | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    """One repository as the cache last read it: ``problem`` is empty when it could be read;
    ``size`` the bytes its packs, indexes and snapshots take (None until measured)."""

    label: str
    location: str
    problem: str = ""
    size: int | None = None
    snapshots: int = 0
    read_at: float | None = None

    @property
    def healthy(self) -> bool:
        """Return whether the repository could be read."""
        return not self.problem


@dataclass(frozen=True, slots=True)
class JobOverview:
    """One job for the Backups page: its status (as ``status`` reports it), its state and
    why, its repositories, its backups and drills oldest first."""

    job: str
    status: JobStatus
    state: JobState
    reasons: tuple[str, ...] = ()
    repositories: tuple[RepositoryInfo, ...] = ()
    snapshots: tuple[SnapshotPoint, ...] = ()
    drills: tuple[DrillPoint, ...] = ()

    def to_json(self, *, timeline: bool = True) -> JSONObject:
        """Return the overview as JSON; without ``timeline``, the snapshot and drill lists
        are left out (their counts stay)."""
        out: JSONObject = {
            "job": self.job, "state": self.state.value, "reasons": list(self.reasons),
            "status": self.status.to_json(),
            "repositories": [{**asdict(r), "healthy": r.healthy} for r in self.repositories],
            "snapshot_count": len(self.snapshots), "drill_count": len(self.drills),
        }
        if timeline:
            out["snapshots"] = [_point_json(p) for p in self.snapshots]
            out["drills"] = [dict(asdict(d)) for d in self.drills]
        return out


def _point_json(p: SnapshotPoint) -> JSONObject:
    out: JSONObject = dict(asdict(p))
    out["tags"], out["paths"] = list(p.tags), list(p.paths)
    return out


@dataclass(slots=True)
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)  # the fields below
    io: threading.Lock = field(default_factory=threading.Lock)  # one read at a time
    repo: Repository | None = None
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    listed_at: float | None = None
    sized_at: float | None = None
    size: int | None = None
    error: BackupError | None = None
    refreshing: bool = False


class SnapshotCache:
    """The snapshots of each repository. The first read of a repository is done at once;
    after that a read older than ``ttl`` seconds is served as it is while a background
    thread refreshes it (``background=False`` refreshes in the caller instead), so a page
    view never waits for a listing once the cache is warm. Sizes are measured at most every
    ``size_ttl`` seconds. Safe to share between threads. ``opener`` opens a repository
    (default :func:`open_repository`); ``clock`` is monotonic seconds."""

    def __init__(self, ttl: float = 15.0, size_ttl: float = 300.0, *, background: bool = True,
                 opener: Callable[[RepositorySpec], Repository] = open_repository,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size_ttl, self.background = ttl, size_ttl, background
        self._opener, self._clock = opener, clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, spec: RepositorySpec) -> _Entry:
        with self._lock:
            return self._entries.setdefault(spec.label, _Entry())

    def snapshots(self, spec: RepositorySpec) -> list[Snapshot]:
        """Return every readable snapshot of ``spec``'s repository, oldest first, as last
        read (reading it now if it never was). Raise the BackupError of the last read if it
        failed."""
        entry = self._entry(spec)
        with entry.lock:
            listed_at = entry.listed_at
            due = listed_at is not None and self._clock() - listed_at >= self.ttl
            later = due and self.background and not entry.refreshing
            if later:
                entry.refreshing = True
        if listed_at is None or (due and not self.background):
            with entry.io:
                if entry.listed_at == listed_at:  # nobody read it meanwhile
                    self._read(spec, entry)
        elif later:
            threading.Thread(target=self._refresh_later, args=(spec, entry),
                             name="airflow-backup-snapshot-cache", daemon=True).start()
        with entry.lock:
            if entry.error is not None:
                raise entry.error.with_traceback(None)
            snaps = list(entry.snapshots.values())
        snaps.sort(key=lambda s: (s.time_ns, s.id))
        return snaps

    def _refresh_later(self, spec: RepositorySpec, entry: _Entry) -> None:
        try:
            with entry.io:
                self._read(spec, entry)
        finally:
            with entry.lock:
                entry.refreshing = False

    def _read(self, spec: RepositorySpec, entry: _Entry) -> None:
        """List the snapshot files, load the new ones, forget the removed ones; measure the
        size when due. The I/O is done without holding ``entry.lock`` (readers are served
        what was read before); a failure is kept in ``entry.error`` and the repository is
        reopened next time (its password or store may have been fixed meanwhile)."""
        with entry.lock:
            repo, known, sized_at = entry.repo, dict(entry.snapshots), entry.sized_at
        size: int | None = None
        try:
            repo = repo or self._opener(spec)
            names = {info.name for info in repo.storage.list(FileType.SNAPSHOT)}
            for gone in set(known) - names:
                del known[gone]
            for name in names - set(known):
                try:
                    known[name] = repo.load_snapshot(name)
                except NotFound:
                    continue  # removed meanwhile (forget)
                except BackupError:
                    continue  # damaged: skipped, as list_snapshots skips it
            if sized_at is None or self._clock() - sized_at >= self.size_ttl:
                size = sum(info.size for kind in _SIZED for info in repo.storage.list(kind))
            error: BackupError | None = None
        except BackupError as exc:
            repo, error = None, exc
        with entry.lock:
            entry.repo, entry.error, entry.listed_at = repo, error, self._clock()
            if error is None:
                entry.snapshots = known
                if size is not None:
                    entry.size, entry.sized_at = size, self._clock()

    def info(self, spec: RepositorySpec) -> RepositoryInfo:
        """Return what the cache knows of ``spec``'s repository (after :meth:`snapshots`)."""
        entry = self._entry(spec)
        with entry.lock:
            problem = describe(entry.error) if entry.error is not None else ""
            return RepositoryInfo(spec.label, spec.location, problem, entry.size,
                                  len(entry.snapshots), entry.listed_at)


def _meta(sn: Snapshot) -> Mapping[str, object]:
    meta = sn.extra.get("airflow_backup")
    return meta if isinstance(meta, dict) else {}


def _point(sn: Snapshot, repository: str) -> SnapshotPoint:
    s = sn.summary
    return SnapshotPoint(
        sn.id, sn.time_ns / 1e9, repository, tuple(sn.tags), tuple(sn.paths), sn.hostname,
        size=s.total_bytes_processed if s else None,
        files=s.total_files_processed if s else None,
        added=s.data_added_packed if s else None,
        degraded=DEGRADED_TAG in sn.tags, partial=bool(_meta(sn).get("partial")))


def _drill(sn: Snapshot, repository: str) -> DrillPoint:
    record = drill_record(sn)
    rto = record.get("rto")
    return DrillPoint(sn.id, sn.time_ns / 1e9, repository, bool(record.get("ok")),
                      float(rto) if isinstance(rto, int | float) else None,
                      str(record.get("error", "")))


def job_state(status: JobStatus, newest: SnapshotPoint | None, newest_drill: DrillPoint | None,
              *, last_run_failed: str = "") -> tuple[JobState, tuple[str, ...]]:
    """Return a job's state — the worst that applies — and every reason found, worst
    first. ``last_run_failed`` describes a failed last backup run (empty if it did not)."""
    found: list[tuple[JobState, str]] = []
    if last_run_failed:
        found.append((JobState.FAILED, last_run_failed))
    if status.rpo_breach:
        age = ("no backup yet" if status.age is None
               else f"newest backup {format_age(status.age)} old")
        found.append((JobState.RPO_BREACHED, f"RPO breached: {age} (RPO "
                                             f"{format_age(status.rpo)})"))
    if not status.healthy:
        found.append((JobState.DEGRADED, f"repository unreadable: {status.health}"))
    if newest is not None and newest.degraded:
        found.append((JobState.DEGRADED, "newest backup landed in fallback repository "
                                         f"{newest.repository}"))
    if newest is not None and newest.partial:
        found.append((JobState.DEGRADED, "newest backup is partial (some files unreadable)"))
    if status.drill_stale:
        found.append((JobState.DRILL_STALE, "no restore drill within "
                                            f"{format_age(status.drill_max_age)}"))
    if newest_drill is not None and not newest_drill.ok:
        found.append((JobState.DRILL_STALE, "last restore drill failed"
                                            + (f": {newest_drill.error}" if newest_drill.error
                                               else "")))
    elif (newest_drill is not None and status.drill_max_rto is not None
          and newest_drill.rto is not None and newest_drill.rto > status.drill_max_rto):
        found.append((JobState.DRILL_STALE, f"last drill's RTO {newest_drill.rto:.1f}s is over "
                                            f"max_rto {status.drill_max_rto:.0f}s"))
    found.sort(key=lambda item: -item[0].severity)
    state = found[0][0] if found else JobState.OK
    return state, tuple(reason for _, reason in found)


def job_overview(watch: JobWatch, cache: SnapshotCache, *, now: float | None = None,
                 last_run_failed: str = "") -> JobOverview:
    """Return ``watch.job``'s overview, read through ``cache`` from its repository and
    fallbacks. ``last_run_failed``: see :func:`job_state`."""
    now = time.time() if now is None else now
    status = job_status(watch, now, read=cache.snapshots)
    points: list[SnapshotPoint] = []
    drills: list[DrillPoint] = []
    infos: list[RepositoryInfo] = []
    for target in watch.spec.chain():
        info = cache.info(target)
        infos.append(info)
        if info.problem:
            continue
        try:
            snaps: Sequence[Snapshot] = cache.snapshots(target)
        except BackupError:
            continue
        for sn in snaps:
            if is_backup_of(sn, watch.job):
                points.append(_point(sn, target.label))
            elif is_drill_of(sn, watch.job):
                drills.append(_drill(sn, target.label))
    points.sort(key=lambda p: (p.time, p.id))
    drills.sort(key=lambda d: (d.time, d.id))
    state, reasons = job_state(status, points[-1] if points else None,
                               drills[-1] if drills else None, last_run_failed=last_run_failed)
    return JobOverview(watch.job, status, state, reasons, tuple(infos), tuple(points),
                       tuple(drills))
