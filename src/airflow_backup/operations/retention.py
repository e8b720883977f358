"""Retention: restic's ``forget`` policy, then (optionally) ``prune`` — one implementation
for ``forget``/``prune``, the job runner's retention step, the generated DAGs' retention and
maintenance tasks and ForgetPruneOperator.

Snapshots are selected by a filter (drill records are never selected by a job's filter),
grouped (default host and paths), and the policy is applied per group. One guard protects
the newest data everywhere: with restic's current rules a non-empty policy that would remove
every snapshot of a group is refused (ConfigError), as restic ≥ 0.16 does. Removal and prune
run under an exclusive lock, waiting up to ``lock_wait`` for others to finish; the decision
is taken again once the lock is held, since others may have changed the snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError, IntegrityError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.outcome import Outcome
from airflow_backup.repository.forget import ExpirePolicy, PolicyResult, Semantics, apply_policy
from airflow_backup.repository.groups import GroupKey, group_snapshots, parse_group_by
from airflow_backup.repository.prune import (
    PruneOptions,
    PrunePlan,
    PruneResult,
    execute_prune,
    plan_prune,
)
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter, select_snapshots
from airflow_backup.repository.snapshot import Snapshot

__all__ = [
    "GroupDecision",
    "PruneOutcome",
    "RetentionOutcome",
    "RetentionRequest",
    "prune",
    "retention",
]

Progress = Callable[[str, int, int], None]

#: A temporary file of an interrupted write this old is left over, not in progress: every
#: write finishes in far less, and a writer's lock would have gone stale after 30 minutes.
STALE_TEMPORARY_S = 3600.0


@dataclass(frozen=True, slots=True)
class RetentionRequest:
    """Which snapshots and what to keep. ``ids`` removes exactly those snapshots instead of
    applying ``policy``; ``allow_remove_all`` lets an empty policy remove every snapshot that
    matches a (required) filter; ``prune`` runs prune afterwards if anything was removed."""

    policy: ExpirePolicy = field(default_factory=ExpirePolicy)
    filter: SnapshotFilter = field(default_factory=SnapshotFilter)
    group_by: str = "host,paths"
    semantics: Semantics = Semantics.CURRENT
    ids: tuple[str, ...] = ()
    allow_remove_all: bool = False
    prune: bool = False
    prune_options: PruneOptions = field(default_factory=PruneOptions)
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """The policy's decision for one group of snapshots."""

    key: GroupKey
    result: PolicyResult


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneOutcome(Outcome):
    """A prune's plan and, unless it was a dry run or there was nothing to do, what it did."""

    plan: PrunePlan
    result: PruneResult | None = None
    dry_run: bool = False
    temporaries_removed: tuple[str, ...] = ()

    @property
    def freed_bytes(self) -> int:
        """Return the bytes the prune frees (or would free)."""
        return self.plan.stats.freed_size


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionOutcome(Outcome):
    """Snapshots removed (or, for a dry run, that would be) and kept, per group; the prune."""

    removed: tuple[str, ...] = ()
    kept: int = 0
    groups: tuple[GroupDecision, ...] = ()
    policy_applied: bool = False
    pruned: PruneOutcome | None = None
    dry_run: bool = False

    @property
    def freed_bytes(self) -> int:
        """Return the bytes the prune freed (0 without a prune)."""
        return self.pruned.freed_bytes if self.pruned else 0

    def to_json(self) -> JSONObject:
        """Return the outcome as JSON: ids and counts (the per-group decisions and the prune
        plan are for rendering, not for documents)."""
        return {"status": self.status.value, "duration": self.duration,
                "warnings": list(self.warnings), "removed": list(self.removed),
                "kept": self.kept, "policy_applied": self.policy_applied,
                "pruned": self.pruned is not None, "freed_bytes": self.freed_bytes,
                "dry_run": self.dry_run}


def _decide(repo: Repository, request: RetentionRequest
            ) -> tuple[list[Snapshot], list[GroupDecision], bool]:
    """Return the snapshots to remove, the per-group decisions, and whether a policy was
    applied (False for an explicit id list)."""
    policy = request.policy
    if request.ids:
        return select_snapshots(repo, request.filter, list(request.ids)), [], False
    flt = request.filter
    if policy.is_empty():
        if not (request.allow_remove_all and request.semantics is Semantics.CURRENT):
            if request.semantics is Semantics.CURRENT:
                raise ConfigError("no policy was specified, no snapshots will be removed")
            return [], [], False
        if not (flt.hosts or flt.tags or flt.paths):
            raise ConfigError("removing every snapshot needs a snapshot filter "
                              "(host, tag or path)")
    remove: list[Snapshot] = []
    groups: list[GroupDecision] = []
    for key, snaps in group_snapshots(select_snapshots(repo, flt),
                                      parse_group_by(request.group_by)):
        result = apply_policy(snaps, policy, semantics=request.semantics)
        if request.semantics is Semantics.CURRENT and not policy.is_empty() and not result.keep:
            raise ConfigError(f"refusing to delete the last snapshot of group {key.to_json()}")
        groups.append(GroupDecision(key, result))
        remove += result.remove
    return remove, groups, True


def prune(repo: Repository, options: PruneOptions, *, dry_run: bool = False,
          ignore: frozenset[str] = frozenset(), progress: Progress | None = None
          ) -> PruneOutcome:
    """Plan and (unless ``dry_run``) carry out a prune; the caller holds an exclusive lock
    (any lock for a dry run). ``ignore`` names snapshots to treat as already removed."""
    started = time.monotonic()
    plan = plan_prune(repo, options, ignore_snapshots=set(ignore), progress=progress)
    damaged = dict(repo.damaged_snapshots)
    if damaged and not dry_run:
        # Data only a damaged snapshot file references may be all that is left of it (a
        # read that failed once, a file that can still be restored from a copy): prune
        # deletes nothing until the user has removed that file on purpose.
        name = next(iter(damaged))
        raise IntegrityError(f"snapshot file {name} is damaged ({damaged[name]}): prune would "
                             f"delete the data only it references; remove it first with "
                             f"'forget {name}' (or 'repair snapshots --forget'), then prune")
    result = None
    if not (dry_run or plan.nothing_to_do):
        result = execute_prune(repo, plan, progress)
    leftovers = repo.storage.leftover_temporaries(STALE_TEMPORARY_S)
    if not dry_run:
        for path in leftovers:
            repo.storage.remove_temporary(path)
    return PruneOutcome(plan=plan, result=result, dry_run=dry_run,
                        temporaries_removed=() if dry_run else leftovers,
                        warnings=(f"{len(leftovers)} temporary file(s) of interrupted writes "
                                  f"{'would be ' if dry_run else ''}removed",)
                        if leftovers else (),
                        duration=time.monotonic() - started)


def retention(repo: Repository, request: RetentionRequest, *, lock_wait: float = 0.0,
              progress: Progress | None = None) -> RetentionOutcome:
    """Apply ``request`` to ``repo`` (module doc). Raise ConfigError for a refused policy,
    RepositoryLocked if the lock could not be had within ``lock_wait`` seconds."""
    started = time.monotonic()
    remove, groups, applied = _decide(repo, request)  # decided without a lock first
    if not remove and not request.dry_run:
        kept = sum(len(g.result.keep) for g in groups)
        return RetentionOutcome(kept=kept, groups=tuple(groups), policy_applied=applied,
                                duration=time.monotonic() - started)
    with repo.lock(exclusive=not request.dry_run, retry_seconds=lock_wait):
        remove, groups, applied = _decide(repo, request)
        if not request.dry_run:
            for sn in remove:
                repo.remove_snapshot(sn.id)
        pruned = None
        if remove and request.prune:
            pruned = prune(repo, request.prune_options, dry_run=request.dry_run,
                           ignore=frozenset(s.id for s in remove) if request.dry_run
                           else frozenset(), progress=progress)
    return RetentionOutcome(removed=tuple(s.id for s in remove),
                            kept=sum(len(g.result.keep) for g in groups), groups=tuple(groups),
                            policy_applied=applied, pruned=pruned, dry_run=request.dry_run,
                            duration=time.monotonic() - started)
