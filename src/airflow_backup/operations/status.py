"""Freshness and health of jobs, read from the repositories alone, and Prometheus metrics.

:func:`job_status` finds a job's newest snapshot in its repository and fallbacks, its age
against the RPO, and the newest drill record (:mod:`airflow_backup.operations.drill`).
For a job with a ``postgresql+pitr://`` source it also reads the WAL archive of its
repository (:func:`airflow_backup.pitr.gaps.check_archive`): the archive lag (now minus the
time the newest WAL file was archived), the recoverable window and the first problem (a gap
makes the job unhealthy); the RPO of such a job is judged by the archive lag, since the
WAL, not the base backup, is its latest recovery point.
Everything comes from the repositories, so every host sees the same answer; ``airflow-backup
status``, ``run``, ``drill`` and the generated DAGs all write the same metrics file through
:func:`write_metrics` (Prometheus textfile-collector format, written atomically).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from airflow_backup.errors import BackupError, describe
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.spec import RepositorySpec, open_repository
from airflow_backup.operations.tags import is_backup_of, is_drill_of
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import epoch_seconds, parse_ns
from airflow_backup.storage.atomic import replace_file

__all__ = ["JobStatus", "JobWatch", "SnapshotReader", "drill_record", "format_age", "job_status",
           "render_metrics", "statuses", "write_metrics"]

#: Reads every snapshot of one repository (raising BackupError when it cannot): how
#: :func:`job_status` sees a repository. The default opens it and lists its snapshots; the
#: Backups page passes a cached reader (:class:`~airflow_backup.operations.overview.
#: SnapshotCache`).
SnapshotReader = Callable[[RepositorySpec], Sequence[Snapshot]]


@dataclass(frozen=True, slots=True)
class JobWatch:
    """What to watch for one job: its repository (with fallbacks), RPO and RTO limit."""

    job: str
    spec: RepositorySpec
    rpo: float | None = None
    max_rto: float | None = None
    drill_max_age: float | None = None
    #: The job has a postgresql+pitr:// source: read the WAL archive of ``spec``.
    pitr: bool = False


@dataclass(slots=True)
class JobStatus:
    """One job's freshness. Ages in seconds; times in epoch seconds; None when unknown."""

    job: str
    repository: str
    healthy: bool
    health: str
    last_snapshot: str = ""
    last_snapshot_repository: str = ""
    last_snapshot_time: float | None = None
    age: float | None = None
    rpo: float | None = None
    rpo_breach: bool = False
    last_duration: float | None = None
    last_bytes_added: int | None = None
    drill_time: float | None = None
    drill_ok: bool | None = None
    drill_rto: float | None = None
    drill_max_rto: float | None = None
    drill_error: str = ""
    drill_max_age: float | None = None
    drill_stale: bool = False
    location: str = ""
    #: PITR jobs: seconds since the newest WAL file was archived; its name and time; the
    #: recoverable window (RFC 3339 times, None when nothing is recoverable); the first
    #: problem of the WAL archive ('' when none).
    archive_lag: float | None = None
    last_wal: str = ""
    last_wal_time: float | None = None
    window_earliest: str | None = None
    window_latest: str | None = None
    wal_problem: str = ""

    def to_json(self) -> JSONObject:
        """Return the status as a JSON object."""
        return dict(asdict(self))


def format_age(seconds: float | None) -> str:
    """Return an age or duration for people: ``never`` (None), ``45s``, ``12.5m``, ``3.0h``,
    ``2.1d``."""
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _seconds(sn: Snapshot) -> float:
    return sn.time_ns / 1e9


def _duration(sn: Snapshot) -> float | None:
    s = sn.summary
    if s is None or not s.backup_start or not s.backup_end:
        return None
    return (parse_ns(s.backup_end)[0] - parse_ns(s.backup_start)[0]) / 1e9


def drill_record(sn: Snapshot) -> JSONObject:
    """Return the drill result a drill record snapshot holds (empty if none)."""
    meta = sn.extra.get("airflow_backup")
    drill = meta.get("drill") if isinstance(meta, dict) else None
    return drill if isinstance(drill, dict) else {}


def _opening_reader(repos: dict[str, Repository]) -> SnapshotReader:
    def read(target: RepositorySpec) -> Sequence[Snapshot]:
        repo = repos.get(target.label) or open_repository(target)
        repos[target.label] = repo
        return repo.list_snapshots()
    return read


def job_status(watch: JobWatch, now: float | None = None,
               repos: dict[str, Repository] | None = None,
               read: SnapshotReader | None = None) -> JobStatus:
    """Return the status of ``watch.job``. A repository that cannot be opened makes
    ``healthy`` false (and, if no snapshot is found elsewhere, the RPO counts as breached).
    ``repos`` caches opened repositories by label across calls; ``read`` replaces opening
    and listing them."""
    now = time.time() if now is None else now
    read = read or _opening_reader({} if repos is None else repos)
    job = watch.job
    st = JobStatus(job, watch.spec.label, True, "ok", rpo=watch.rpo,
                   drill_max_rto=watch.max_rto, drill_max_age=watch.drill_max_age,
                   location=watch.spec.location)
    problems: list[str] = []
    newest: tuple[Snapshot, str] | None = None
    drill: Snapshot | None = None
    for target in watch.spec.chain():
        name = target.label
        try:
            snaps = read(target)
        except BackupError as exc:
            problems.append(f"{name}: {describe(exc)}")
            continue
        for sn in snaps:
            if is_backup_of(sn, job) and (newest is None
                                             or sn.time_ns > newest[0].time_ns):
                newest = (sn, name)
            if is_drill_of(sn, job) and (
                    drill is None or sn.time_ns > drill.time_ns):
                drill = sn
    if problems:
        st.healthy = False
        st.health = "; ".join(problems)
    if newest is not None:
        sn, name = newest
        st.last_snapshot, st.last_snapshot_repository = sn.id, name
        st.last_snapshot_time = _seconds(sn)
        st.age = max(0.0, now - st.last_snapshot_time)
        st.last_duration = _duration(sn)
        st.last_bytes_added = sn.summary.data_added_packed if sn.summary else None
    if watch.pitr:
        _pitr_status(st, watch.spec, now, repos)
    if watch.rpo is not None:
        lag = st.archive_lag if watch.pitr else st.age
        st.rpo_breach = lag is None or lag > watch.rpo
    if drill is not None:
        record = drill_record(drill)
        st.drill_time = _seconds(drill)
        st.drill_ok = bool(record.get("ok"))
        rto = record.get("rto")
        st.drill_rto = float(rto) if isinstance(rto, int | float) else None
        st.drill_error = str(record.get("error", ""))
    if watch.drill_max_age is not None:
        st.drill_stale = st.drill_time is None or now - st.drill_time > watch.drill_max_age
    return st


def _pitr_status(st: JobStatus, spec: RepositorySpec, now: float,
                 repos: dict[str, Repository] | None) -> None:
    """Fill in the WAL archive fields of ``st`` from ``spec``'s repository (the one the
    server's archive_command writes to); a problem reading or checking it makes the job
    unhealthy."""
    from pathlib import Path

    from airflow_backup.pitr.catalog import PitrCatalog
    from airflow_backup.pitr.gaps import check_archive
    from airflow_backup.storage.cache import resolve_cache_root

    problem = ""
    try:
        repo = (repos or {}).get(spec.label) or open_repository(spec)
        if repos is not None:
            repos[spec.label] = repo
        root = None if spec.cache.enabled is False else Path(
            resolve_cache_root(spec.cache.root or None))
        catalog = PitrCatalog(repo, root)
        report = check_archive(repo, catalog)
    except BackupError as exc:
        problem = f"WAL archive of {spec.label}: {describe(exc)}"
    else:
        wal = catalog.entries("wal")
        if wal:
            newest = wal[-1]
            st.last_wal = newest.name
            st.last_wal_time = parse_ns(newest.time)[0] / 1e9
            st.archive_lag = max(0.0, now - st.last_wal_time)
        st.window_earliest, st.window_latest = report.earliest, report.latest
        problems = report.problems()
        if problems:
            st.wal_problem = problems[0]
            problem = f"WAL archive: {problems[0]}"
    if problem:
        st.healthy = False
        st.health = problem if st.health == "ok" else f"{st.health}; {problem}"


def statuses(watches: list[JobWatch], now: float | None = None) -> list[JobStatus]:
    """Return the status of every watched job, opening each repository once."""
    repos: dict[str, Repository] = {}
    return [job_status(w, now, repos) for w in watches]


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(sts: list[JobStatus]) -> str:
    """Return the Prometheus text exposition of ``sts``."""
    families: list[tuple[str, str, list[tuple[dict[str, str], float]]]] = [
        ("airflow_backup_last_success_timestamp_seconds",
         "Time of the newest snapshot of the job", []),
        ("airflow_backup_snapshot_age_seconds", "Age of the newest snapshot of the job", []),
        ("airflow_backup_last_duration_seconds", "Duration of the newest backup", []),
        ("airflow_backup_last_bytes_added", "Bytes stored by the newest backup", []),
        ("airflow_backup_rpo_seconds", "Recovery point objective of the job", []),
        ("airflow_backup_rpo_breach", "1 if the newest snapshot is older than the RPO", []),
        ("airflow_backup_repository_up", "1 if every repository of the job could be read", []),
        ("airflow_backup_drill_success", "1 if the last restore drill passed", []),
        ("airflow_backup_drill_rto_seconds", "Measured RTO of the last restore drill", []),
        ("airflow_backup_drill_timestamp_seconds", "Time of the last restore drill", []),
        ("airflow_backup_drill_stale", "1 if the last drill is older than drill.max_age", []),
        ("airflow_backup_wal_archive_lag_seconds",
         "Seconds since the newest WAL file of the job's server was archived", []),
        ("airflow_backup_recoverable_window_start_timestamp_seconds",
         "Earliest time the job's PostgreSQL server can be recovered to", []),
        ("airflow_backup_recoverable_window_end_timestamp_seconds",
         "Latest time the job's PostgreSQL server can be recovered to", []),
        ("airflow_backup_wal_archive_ok",
         "1 if the WAL archive has no gap and every base backup is restorable", []),
    ]
    by_name = {name: samples for name, _, samples in families}
    for st in sts:
        lab = {"job": st.job, "repository": st.repository, "location": st.location}
        if st.last_snapshot_time is not None:
            by_name["airflow_backup_last_success_timestamp_seconds"].append(
                (lab, st.last_snapshot_time))
        if st.age is not None:
            by_name["airflow_backup_snapshot_age_seconds"].append((lab, st.age))
        if st.last_duration is not None:
            by_name["airflow_backup_last_duration_seconds"].append((lab, st.last_duration))
        if st.last_bytes_added is not None:
            by_name["airflow_backup_last_bytes_added"].append((lab, float(st.last_bytes_added)))
        if st.rpo is not None:
            by_name["airflow_backup_rpo_seconds"].append((lab, st.rpo))
            by_name["airflow_backup_rpo_breach"].append((lab, float(st.rpo_breach)))
        by_name["airflow_backup_repository_up"].append((lab, float(st.healthy)))
        if st.drill_ok is not None:
            by_name["airflow_backup_drill_success"].append((lab, float(st.drill_ok)))
        if st.drill_rto is not None:
            by_name["airflow_backup_drill_rto_seconds"].append((lab, st.drill_rto))
        if st.drill_time is not None:
            by_name["airflow_backup_drill_timestamp_seconds"].append((lab, st.drill_time))
        if st.drill_max_age is not None:
            by_name["airflow_backup_drill_stale"].append((lab, float(st.drill_stale)))
        if st.archive_lag is not None:
            by_name["airflow_backup_wal_archive_lag_seconds"].append((lab, st.archive_lag))
        for name, when in (("start", st.window_earliest), ("end", st.window_latest)):
            seconds = epoch_seconds(when)
            if seconds is not None:
                by_name[f"airflow_backup_recoverable_window_{name}_timestamp_seconds"].append(
                    (lab, seconds))
        if st.last_wal or st.wal_problem:
            by_name["airflow_backup_wal_archive_ok"].append((lab, float(not st.wal_problem)))
    lines: list[str] = []
    for name, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value!r}")
    return "\n".join(lines) + "\n"


def write_metrics(path: str, sts: list[JobStatus]) -> None:
    """Write the metrics of ``sts`` to ``path`` atomically."""
    text = render_metrics(sts)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    replace_file(path, text.encode("utf-8"), mode=0o644)  # read by the node exporter
