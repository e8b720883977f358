"""Retention: restic's ``forget`` policy, then (optionally) ``prune`` — one implementation
for ``forget``/``prune``, the job runner's retention step, the generated DAGs' retention and
maintenance tasks and ForgetPruneOperator.

Snapshots are selected by a filter (drill records are never selected by a job's filter),
grouped (default host and paths), and the policy is applied per group. One guard protects
the newest data everywhere: with restic's current rules a non-empty policy that would remove
every snapshot of a group is refused (ConfigError), as restic ≥ 0.16 does. Removal and prune
run under an exclusive lock, waiting up to ``lock_wait`` for others to finish; the decision
is taken again once the lock is held, since others may have changed the snapshots. That second
look lists the snapshot files again but reads only those it has not read yet: a snapshot file
is named by the hash of its content, so a name read before stands for the same snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError, IntegrityError, NotFound
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
from airflow_backup.storage.base import FileType

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


class _Listing:
    """Every readable snapshot of a repository, oldest first, as
    :meth:`Repository.list_snapshots` returns them: read when first asked for, then kept;
    :meth:`refresh` lists again, reading only the snapshot files not read before."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._snapshots: list[Snapshot] | None = None
        self.changed = True  # since the previous listing (there was none)

    @property
    def snapshots(self) -> list[Snapshot]:
        """Return the snapshots (listing the repository the first time)."""
        if self._snapshots is None:
            self._snapshots = self.repo.list_snapshots()
        return self._snapshots

    def refresh(self) -> None:
        """List the snapshot files again, if they were listed before: drop the snapshots
        whose files are gone, read the new files. Afterwards ``snapshots`` (and the
        repository's ``damaged_snapshots``) are what :meth:`Repository.list_snapshots` would
        return now, and ``changed`` says whether they differ from before."""
        repo = self.repo
        if self._snapshots is None:  # not needed so far: listed when first asked for
            return
        if repo.damaged_snapshots:
            # A file that could not be read may read now (or still not): read everything
            # again, with the repository's own warnings and records. Rare.
            self._snapshots, self.changed = repo.list_snapshots(), True
            return
        names = {info.name for info in repo.storage.list(FileType.SNAPSHOT)}
        before = self._snapshots
        kept = [sn for sn in before if sn.id in names]
        known = {sn.id for sn in before}
        added: list[Snapshot] = []
        for name in sorted(names - known):
            try:
                added.append(repo.load_snapshot(name))
            except NotFound:  # removed meanwhile, as list_snapshots skips it
                continue
            except IntegrityError:
                # A damaged new file: the repository's own listing records it and warns.
                self._snapshots, self.changed = repo.list_snapshots(), True
                return
        self.changed = bool(added) or len(kept) != len(before)
        if added:  # the order of list_snapshots; the times are parsed only in this case
            kept = sorted(kept + added, key=lambda sn: (sn.time_ns, sn.id))
        self._snapshots = kept


def _decide(repo: Repository, request: RetentionRequest, listing: _Listing | None
            ) -> tuple[list[Snapshot], list[GroupDecision], bool]:
    """Return the snapshots to remove, the per-group decisions, and whether a policy was
    applied (False for an explicit id list). A policy is applied to ``listing``'s
    snapshots (None: ids only)."""
    policy = request.policy
    if request.ids or listing is None:
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
    # select_snapshots(repo, flt), from the listing.
    selected = [sn for sn in listing.snapshots if flt.matches(sn)]
    for key, snaps in group_snapshots(selected, parse_group_by(request.group_by)):
        result = apply_policy(snaps, policy, semantics=request.semantics)
        if request.semantics is Semantics.CURRENT and not policy.is_empty() and not result.keep:
            raise ConfigError(f"refusing to delete the last snapshot of group {key.to_json()}")
        groups.append(GroupDecision(key, result))
        remove += result.remove
    return remove, groups, True


def _depends_on_now(policy: ExpirePolicy) -> bool:
    """Return whether applying ``policy`` depends on the clock as well as on the snapshots:
    the ``within`` rules measure from the latest snapshot not in the future."""
    return not (policy.within.is_zero() and all(d.is_zero() for d in policy.within_durations()))


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
    # Explicit ids: select_snapshots reads what it needs, both times.
    listing = None if request.ids else _Listing(repo)
    remove, groups, applied = _decide(repo, request, listing)  # decided without a lock first
    if not remove and not request.dry_run:
        kept = sum(len(g.result.keep) for g in groups)
        return RetentionOutcome(kept=kept, groups=tuple(groups), policy_applied=applied,
                                duration=time.monotonic() - started)
    with repo.lock(exclusive=not request.dry_run, retry_seconds=lock_wait):
        if listing is not None:
            listing.refresh()
        if listing is None or listing.changed or _depends_on_now(request.policy):
            remove, groups, applied = _decide(repo, request, listing)
        # else the same snapshots, and a policy that looks at nothing else: same decision
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
