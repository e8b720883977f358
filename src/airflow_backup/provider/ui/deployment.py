"""What the Backups page reads in the api-server: the jobs configs, their jobs' overviews
(through one shared :class:`~airflow_backup.operations.overview.SnapshotCache`) and the
latest runs of the jobs' DAGs from Airflow's metadata database.

The configs are ``[airflow_backup] jobs_config`` (comma-separated paths; environment
``AIRFLOW__AIRFLOW_BACKUP__JOBS_CONFIG``), else the config the CLI would find
(:func:`~airflow_backup.jobs.places.find_config`). A config is re-read when its file
changes. The api-server needs what the DAGs' tasks need to open the repositories (the
password variables or files, or the Airflow connections the config names).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_backup.errors import BackupError, describe
from airflow_backup.jobs.config import Job
from airflow_backup.jobs.export import shown_source
from airflow_backup.jobs.load import LoadedConfig, load_config_isolated
from airflow_backup.jobs.places import find_config
from airflow_backup.jobs.repos import job_watches
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.overview import JobOverview, SnapshotCache, job_overview
from airflow_backup.operations.restore import OnExisting

__all__ = ["DAG_KINDS", "Deployment", "JobEntry", "config_paths", "dag_ids", "latest_runs",
           "paused_dags"]

log = logging.getLogger("airflow_backup.provider.ui")

#: The generated DAGs of a job, by what the page calls them.
DAG_KINDS = ("backup", "drill", "restore")


def dag_ids(job: str) -> dict[str, str]:
    """Return the ids of ``job``'s generated DAGs by kind (backup, drill, restore)."""
    return {kind: f"{kind}__{job}" for kind in DAG_KINDS}


def config_paths() -> list[str]:
    """Return the jobs configs the page shows (see the module's docstring)."""
    from airflow.configuration import conf

    configured = conf.get("airflow_backup", "jobs_config", fallback="") or ""
    paths = [p.strip() for p in configured.split(",") if p.strip()]
    if not paths:
        found = find_config()
        paths = [found] if found else []
    return [os.path.abspath(os.path.expanduser(p)) for p in paths]


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One job of one config, with what the restore form offers."""

    name: str
    config_path: str
    job: Job
    loaded: LoadedConfig

    def restore_form(self) -> JSONObject:
        """Return the restore DAG's choices: the job's sources as shown (no secrets) and
        the on-existing choices."""
        return {"sources": [shown_source(s) for s in self.job.sources],
                "on_existing": [e.value for e in OnExisting]}


@dataclass(slots=True)
class _Loaded:
    mtime: float
    loaded: LoadedConfig | None
    problem: str = ""


@dataclass
class Deployment:
    """The configs and the snapshot cache, shared by every request of the api-server."""

    cache: SnapshotCache = field(default_factory=SnapshotCache)
    _configs: dict[str, _Loaded] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configs(self) -> list[tuple[str, LoadedConfig | None, str]]:
        """Return each config as (path, loaded config or None, why it could not be read);
        re-read a file that changed since it was last read."""
        out: list[tuple[str, LoadedConfig | None, str]] = []
        for path in config_paths():
            try:
                mtime = os.stat(path).st_mtime
            except OSError as exc:
                out.append((path, None, f"cannot read {path}: {exc.strerror}"))
                continue
            with self._lock:
                seen = self._configs.get(path)
                if seen is None or seen.mtime != mtime:
                    try:
                        seen = _Loaded(mtime, load_config_isolated(path))
                    except BackupError as exc:
                        seen = _Loaded(mtime, None, describe(exc))
                    self._configs[path] = seen
            out.append((path, seen.loaded, seen.problem))
        return out

    def jobs(self) -> list[JobEntry]:
        """Return every valid job of every config (the first config wins a name clash, as
        the DAG ids would clash)."""
        entries: dict[str, JobEntry] = {}
        for path, loaded, _ in self.configs():
            if loaded is None:
                continue
            for name, job in loaded.config.jobs.items():
                entries.setdefault(name, JobEntry(name, path, job, loaded))
        return list(entries.values())

    def overview(self, entry: JobEntry, last_run_failed: str = "") -> JobOverview:
        """Return ``entry``'s overview, read through the shared cache."""
        watch = job_watches(entry.loaded.config, [entry.name])[0]
        return job_overview(watch, self.cache, now=time.time(), last_run_failed=last_run_failed)

    def warm(self) -> None:
        """Read every job's repositories once, so that the first page view is served from
        the cache (the api-server calls this in the background when it starts)."""
        started = time.monotonic()
        jobs = 0
        for entry in self.jobs():
            try:
                self.overview(entry)
                jobs += 1
            except Exception as exc:  # a warm-up must never take the api-server down
                log.warning("Backups page: could not read job %s yet: %s", entry.name, exc)
        log.info("Backups page: %d job(s) read in %.1fs", jobs, time.monotonic() - started)


def latest_runs(ids: list[str]) -> dict[str, dict[str, Any]]:
    """Return the newest run of each DAG in ``ids`` that has one: id, state, start and end
    (ISO 8601), by DAG id. Reads Airflow's metadata database (allowed in the api-server)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        for dag_id in ids:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id)
                                 .order_by(DagRun.run_after.desc()).limit(1))
            if run is None:
                continue
            state = getattr(run.state, "value", run.state)  # DagRunState or None
            out[dag_id] = {
                "dag_id": dag_id, "run_id": run.run_id, "state": str(state or ""),
                "start": run.start_date.isoformat() if run.start_date else None,
                "end": run.end_date.isoformat() if run.end_date else None,
            }
    return out


def paused_dags(ids: list[str]) -> set[str]:
    """Return the DAGs of ``ids`` that are paused (a run triggered there waits until they
    are unpaused)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(session.scalars(select(DagModel.dag_id).where(
            DagModel.dag_id.in_(ids), DagModel.is_paused.is_(True))))
