"""The jobs config, translated into the operations layer's terms: a repository entry becomes a
:class:`~airflow_backup.operations.spec.RepositorySpec` (with its fallback chain), a job's
settings become the options of the operations it runs. Nothing here opens or runs anything.
"""

from __future__ import annotations

from dataclasses import replace

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config, Job, RepositoryConfig, RetentionConfig
from airflow_backup.operations.drill import DrillOptions, FileCheck, SqlCheck
from airflow_backup.operations.restore import OnExisting, RestoreRequest
from airflow_backup.operations.retention import RetentionRequest
from airflow_backup.operations.retry import StepRetry
from airflow_backup.operations.spec import (
    CacheSpec,
    PasswordKind,
    PasswordSource,
    RepositorySpec,
)
from airflow_backup.operations.status import JobWatch
from airflow_backup.operations.tags import SourceFilter, backup_filter, job_tag
from airflow_backup.operations.verify import VerifyOptions
from airflow_backup.repository.forget import ExpirePolicy, parse_duration
from airflow_backup.storage.compose import display_location
from airflow_backup.storage.limiter import RateLimits
from airflow_backup.storage.retry import RetryPolicy

__all__ = [
    "display_location",
    "drill_options",
    "expire_policy",
    "job_restore_request",
    "job_watches",
    "pitr_source",
    "repository_spec",
    "retention_request",
    "step_retry",
    "verify_options",
]


def repository_spec(config: Config, name: str, cache: CacheSpec | None = None, *,
                    with_fallbacks: bool = True, primary: bool = True) -> RepositorySpec:
    """Return the spec of repository ``name`` (and, with ``with_fallbacks``, its fallback
    chain). ``primary``: whether AIRFLOW_BACKUP_FAULTS applies (drills and tests)."""
    rc = config.repositories[name]
    fallbacks = tuple(repository_spec(config, f, cache, with_fallbacks=False, primary=False)
                      for f in rc.fallbacks) if with_fallbacks else ()
    if rc.connection:
        from airflow_backup.connections import get_connection
        from airflow_backup.operations.connection_spec import spec_from_connection

        return replace(spec_from_connection(get_connection(rc.connection), name=name,
                                            cache=cache, lock_wait=rc.lock_wait,
                                            inject_faults=primary, fallbacks=fallbacks),
                       limits=_limits(rc))
    if rc.password_file:
        password = PasswordSource(PasswordKind.FILE, rc.password_file, label=f"repository {name}")
    elif rc.password_env:
        password = PasswordSource(PasswordKind.ENV, rc.password_env, label=f"repository {name}")
    else:
        assert rc.password_command
        password = PasswordSource(PasswordKind.COMMAND, rc.password_command,
                                  label=f"repository {name}")
    r = rc.retry
    return RepositorySpec(rc.url, password, name=name,
                          retry=RetryPolicy(r.attempts, r.base_delay, r.max_delay, r.max_time),
                          cache=cache or CacheSpec(), lock_wait=rc.lock_wait,
                          inject_faults=primary, fallbacks=fallbacks, limits=_limits(rc))


def _limits(rc: RepositoryConfig) -> RateLimits:
    return RateLimits(rc.limit_upload, rc.limit_download)


def step_retry(job: Job) -> StepRetry:
    """Return the per-step retry policy of ``job``."""
    r = job.retry
    return StepRetry(r.attempts, r.initial_delay, r.multiplier, r.max_delay, r.jitter)


def expire_policy(r: RetentionConfig) -> ExpirePolicy:
    """Return the engine's policy for a job's retention settings."""
    return ExpirePolicy(last=r.keep_last, hourly=r.keep_hourly, daily=r.keep_daily,
                        weekly=r.keep_weekly, monthly=r.keep_monthly, yearly=r.keep_yearly,
                        within=parse_duration(r.keep_within) if r.keep_within
                        else ExpirePolicy().within,
                        tags=tuple((t,) for t in r.keep_tag))


def retention_request(name: str, job: Job) -> RetentionRequest:
    """Return the retention of job ``name``: its policy over its own backups (never drill
    records), grouped by host and paths, pruning if configured."""
    return RetentionRequest(policy=expire_policy(job.retention),
                            filter=backup_filter(job=name), prune=job.retention.prune)


def verify_options(job: Job) -> VerifyOptions:
    """Return the after-store verification of ``job``."""
    v = job.verification
    return VerifyOptions(read_back=v.read_back, check_subset=v.check_subset)


def drill_options(job: Job) -> DrillOptions:
    """Return the drill settings of ``job`` (the defaults if it has no drill section)."""
    d = job.drill
    databases = _pitr_databases(job)
    if d is None:
        return DrillOptions(pitr_databases=databases)
    return DrillOptions(target=d.target, max_rto=d.max_rto, compare_recorded=d.compare_recorded,
                        sql=tuple(SqlCheck(a.query, str(a.expect)) for a in d.sql),
                        files=tuple(FileCheck(f.path, f.sha256) for f in d.files),
                        pitr_within=d.pitr_within, pitr_databases=databases)


def pitr_source(job: Job) -> str:
    """Return the job's ``postgresql+pitr://`` source ('' if it has none)."""
    from airflow_backup.sources.pg_pitr import is_pitr_url

    return next((s for s in job.sources if is_pitr_url(s)), "")


def _pitr_databases(job: Job) -> tuple[str, ...]:
    source = pitr_source(job)
    if not source:
        return ()
    from airflow_backup.sources.base import SourceURL
    from airflow_backup.sources.pg_pitr import drill_databases

    return tuple(drill_databases(SourceURL.parse(source, allow_password=True)))


def job_watches(config: Config, jobs: list[str] | None = None,
                cache: CacheSpec | None = None) -> list[JobWatch]:
    """Return what ``status`` and the metrics watch for ``jobs`` (default: all)."""
    watches = []
    for name in jobs or list(config.jobs):
        job = config.jobs[name]
        drill = job.drill
        watches.append(JobWatch(name, repository_spec(config, job.repository, cache), job.rpo,
                                drill.max_rto if drill is not None else None,
                                drill.max_age if drill is not None else None,
                                pitr=bool(pitr_source(job))))
    return watches


def job_restore_request(config: Config, job: str, *, target: str, source: str = "",
                        snapshot: str = "latest", as_of: str = "",
                        on_existing: OnExisting = OnExisting.FAIL) -> RestoreRequest:
    """Return the restore of one source of ``job``: ``source`` is one of its sources as
    configured or as shown (:func:`~airflow_backup.jobs.export.shown_source`; default: its
    files if it has paths, else its first data source); ``snapshot`` ``latest`` or an id
    prefix, or ``as_of`` the newest at or before a time, among that source's backups (never
    drill records). Raise ConfigError naming the job's sources for an unknown ``source``."""
    from airflow_backup.jobs.export import is_source_url, shown_source

    spec = config.jobs[job]
    if not source:
        paths = [s for s in spec.sources if not is_source_url(s)]
        source = paths[0] if paths else spec.sources[0]
    chosen = next((s for s in spec.sources if source in (s, shown_source(s))), None)
    if chosen is None:
        raise ConfigError(f"job {job} has no source {source!r} (its sources: "
                          + ", ".join(shown_source(s) for s in spec.sources) + ")")
    url = shown_source(chosen) if is_source_url(chosen) else ""
    return RestoreRequest(target=target, snapshot=snapshot or "latest", as_of=as_of,
                          filter=SourceFilter(tags=[job_tag(job)], source_url=url),
                          on_existing=on_existing)
