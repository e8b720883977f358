"""Copy: a job's offsite copy — one implementation for ``airflow-backup run`` (the job's
``copy_to``) and the generated DAGs' ``copy`` task; the ``copy`` verb uses the same engine
function (:func:`airflow_backup.repository.copying.copy_snapshots`).

Every snapshot of the job (tag ``job=<name>``) in the repository its backup landed in that
a target lacks is copied, so a target that missed a run (down, unreachable) catches up at
the next one. Both repositories are held under shared locks; waiting for a conflicting lock
is bounded by ``lock_wait``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from airflow_backup.operations.outcome import Outcome
from airflow_backup.repository.copying import copy_snapshots
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter, select_snapshots

__all__ = ["CopyOutcome", "TargetCopy", "copy_job_snapshots"]


@dataclass(frozen=True, slots=True)
class TargetCopy:
    """What one target received: the new snapshot ids, how many were there already, and
    the blobs and bytes transferred."""

    repository: str
    location: str
    copied: tuple[str, ...] = ()
    skipped: int = 0
    blobs: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOutcome(Outcome):
    """The copies made, per target repository."""

    targets: tuple[TargetCopy, ...] = ()


def copy_job_snapshots(src: Repository, targets: list[tuple[str, Repository]],
                       flt: SnapshotFilter, lock_wait: float = 0.0) -> CopyOutcome:
    """Copy the snapshots of ``src`` matching ``flt`` into each ``(name, repository)`` of
    ``targets`` that lacks them. Raise the first error (a storage, lock or integrity error);
    targets copied before it keep their copies."""
    started = time.monotonic()
    done: list[TargetCopy] = []
    with src.lock(exclusive=False, retry_seconds=lock_wait):
        wanted = [s for s in select_snapshots(src, flt) if not s.damaged]
        for name, dst in targets:
            with dst.lock(exclusive=False, retry_seconds=lock_wait):
                result = copy_snapshots(src, dst, wanted)
            done.append(TargetCopy(name, dst.storage.location,
                                   tuple(new for _, new in result.copied),
                                   len(result.skipped), result.blobs, result.bytes))
    return CopyOutcome(duration=time.monotonic() - started, targets=tuple(done))
