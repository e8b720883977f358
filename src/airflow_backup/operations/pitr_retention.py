"""``pg forget``: forget the base backups a PITR retention policy does not keep and the WAL
only they needed (the plan: :func:`airflow_backup.pitr.retention.plan_pitr_retention`),
through the one retention operation, so removal and prune are those of ``forget ID``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.retention import RetentionOutcome, RetentionRequest, retention
from airflow_backup.pitr.catalog import PitrCatalog
from airflow_backup.pitr.gaps import read_histories
from airflow_backup.pitr.retention import (
    PitrRetentionPlan,
    PitrRetentionPolicy,
    plan_pitr_retention,
)
from airflow_backup.repository.prune import PruneOptions
from airflow_backup.repository.repo import Repository

__all__ = ["PitrForget", "forget_pitr"]


@dataclass(frozen=True, slots=True)
class PitrForget:
    """What :func:`forget_pitr` decided and, unless nothing was to be forgotten, what the
    retention operation did (``outcome``: removed ids, the prune)."""

    plan: PitrRetentionPlan
    outcome: RetentionOutcome | None = None

    def to_json(self) -> JSONObject:
        """Return the decision and the outcome as a JSON object."""
        doc = self.plan.to_json()
        doc["removed"] = list(self.outcome.removed) if self.outcome else []
        doc["dry_run"] = bool(self.outcome.dry_run) if self.outcome else False
        doc["pruned"] = bool(self.outcome and self.outcome.pruned is not None)
        doc["freed_bytes"] = self.outcome.freed_bytes if self.outcome else 0
        return doc


def forget_pitr(repo: Repository, catalog: PitrCatalog, policy: PitrRetentionPolicy, *,
                segment_size: int | None = None, dry_run: bool = False, prune: bool = False,
                prune_options: PruneOptions | None = None, lock_wait: float = 0.0,
                progress: Callable[[str, int, int], None] | None = None) -> PitrForget:
    """Decide (under a shared lock) and forget the base backups and WAL ``policy`` does not
    keep, through the retention operation (exclusive lock; ``prune`` afterwards if asked
    and something was removed; nothing removed when ``dry_run``). Raise ConfigError (no base
    backup, bad segment size), RepositoryLocked, IntegrityError (a damaged ``.history``
    file), or a storage error."""
    with repo.lock(exclusive=False, retry_seconds=lock_wait):
        catalog.refresh()
        histories = read_histories(repo, catalog)
        plan = plan_pitr_retention(catalog.entries("basebackup"), catalog.entries("wal"),
                                   histories, policy, segment_size=segment_size)
    ids = plan.forget_ids()
    if not ids:
        return PitrForget(plan)
    request = RetentionRequest(ids=ids, prune=prune, dry_run=dry_run,
                               prune_options=prune_options or PruneOptions())
    outcome = retention(repo, request, lock_wait=lock_wait, progress=progress)
    if not dry_run:
        catalog.refresh()  # drop the forgotten snapshots from the local cache
    return PitrForget(plan, outcome)
