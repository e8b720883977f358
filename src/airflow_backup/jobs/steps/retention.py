"""The retention step: restic's ``forget`` policy applied to one job's snapshots.

Only snapshots tagged ``job=<name>`` are considered (drill records never), grouped like
restic's default (host and paths); the newest snapshot of a group is never removed. With
``prune: true`` unreferenced data is then pruned under an exclusive lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_backup.jobs.config import Config, RetentionConfig
from airflow_backup.jobs.steps.common import JobSession, StepResult, is_job_snapshot
from airflow_backup.repository.forget import ExpirePolicy, apply_policy, parse_duration
from airflow_backup.repository.groups import group_snapshots, parse_group_by
from airflow_backup.repository.prune import PruneOptions, execute_prune, plan_prune
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["RetentionResult", "expire_policy", "retention_step"]


@dataclass(frozen=True, slots=True)
class RetentionResult(StepResult):
    """Snapshots removed and kept; bytes freed by a prune."""

    job: str
    repository: str
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    pruned: bool = False
    freed_bytes: int = 0


def expire_policy(r: RetentionConfig) -> ExpirePolicy:
    """Return the engine's policy for a job's retention settings."""
    return ExpirePolicy(last=r.keep_last, hourly=r.keep_hourly, daily=r.keep_daily,
                        weekly=r.keep_weekly, monthly=r.keep_monthly, yearly=r.keep_yearly,
                        within=parse_duration(r.keep_within) if r.keep_within
                        else ExpirePolicy().within,
                        tags=tuple((t,) for t in r.keep_tag))


def _decide(repo: Repository, job: str, policy: ExpirePolicy) -> tuple[list[Snapshot], int]:
    """Return the job's snapshots the policy removes, and how many it keeps."""
    snaps = [s for s in repo.list_snapshots() if is_job_snapshot(s, job)]
    remove: list[Snapshot] = []
    kept = 0
    for _, group in group_snapshots(snaps, parse_group_by("host,paths")):
        result = apply_policy(group, policy)
        if not result.keep:
            continue  # never remove the last snapshot of a group
        kept += len(result.keep)
        remove += result.remove
    return remove, kept


def retention_step(config: Config, job: str, repository: str,
                   session: JobSession | None = None) -> RetentionResult:
    """Apply the job's retention in ``repository`` (where its snapshot just landed). The
    exclusive lock is taken only when there is something to remove, waiting up to the
    repository's ``lock_wait`` for other processes' locks. Raise RepositoryLocked if it
    could not be had by then."""
    session = session or JobSession(config)
    settings = config.jobs[job].retention
    if settings.is_empty():
        return RetentionResult(job, repository)
    repo = session.repository(repository, primary=repository == config.jobs[job].repository)
    policy = expire_policy(settings)
    remove, kept = _decide(repo, job, policy)
    if not remove:
        return RetentionResult(job, repository, [], kept)
    freed = 0
    with repo.lock(exclusive=True, retry_seconds=config.repositories[repository].lock_wait):
        remove, kept = _decide(repo, job, policy)  # again: others may have changed them
        for sn in remove:
            repo.remove_snapshot(sn.id)
        if remove and settings.prune:
            plan = plan_prune(repo, PruneOptions())
            freed = plan.stats.freed_size
            execute_prune(repo, plan)
    removed = [sn.id for sn in remove]
    return RetentionResult(job, repository, removed, kept, bool(removed and settings.prune),
                           freed)
