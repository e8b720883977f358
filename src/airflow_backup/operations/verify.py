"""Verification: ``check`` of a whole repository (``airflow-backup check``, the maintenance
DAG's check task, VerifyBackupOperator) and the read-back of new snapshots (the job runner's
verify step and the generated DAGs' verify task).

:func:`check` returns a :class:`CheckOutcome` whose status is ``failed`` when the repository
is damaged (the report names the damage); :func:`verify_snapshots` raises IntegrityError on
the first problem, since a snapshot that cannot be read back is not a backup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airflow_backup.errors import IntegrityError
from airflow_backup.operations.outcome import Failure, Outcome, Status
from airflow_backup.operations.retention import STALE_TEMPORARY_S
from airflow_backup.repository.check import CheckOptions, CheckReport, check_repository
from airflow_backup.repository.names import show_name
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import FileType, Handle

__all__ = ["CheckOutcome", "VerifyOptions", "VerifyOutcome", "check", "read_back",
           "verify_snapshots"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOutcome(Outcome):
    """A check's report; ``failed`` when it found damage."""

    report: CheckReport

    def summary(self) -> str:
        """Return the one-line verdict (the error's message when damaged)."""
        r = self.report
        if r.ok:
            return f"no errors were found ({r.snapshots} snapshots, {r.packs} packs, " \
                   f"{r.packs_read} read)"
        return (f"repository contains {len(r.errors)} error(s); damaged packs: "
                f"{len(r.damaged_packs)}, damaged snapshot files: "
                f"{len(r.damaged_snapshot_files)}, snapshots affected: {len(r.affected)}")


def check(repo: Repository, options: CheckOptions, *, lock_wait: float = 0.0,
          progress: Callable[[str, int, int], None] | None = None) -> CheckOutcome:
    """Check ``repo`` under a shared lock (waiting up to ``lock_wait`` seconds for it)."""
    started = time.monotonic()
    with repo.lock(exclusive=False, retry_seconds=lock_wait):
        report = check_repository(repo, options, progress)
    leftovers = repo.storage.leftover_temporaries(STALE_TEMPORARY_S)
    warnings = (f"{len(leftovers)} temporary file(s) left by interrupted writes (e.g. "
                f"{leftovers[0]}); 'prune' removes them",) if leftovers else ()
    outcome = CheckOutcome(report=report, duration=time.monotonic() - started,
                           warnings=warnings)
    if report.ok:
        return outcome
    return CheckOutcome(report=report, duration=outcome.duration, status=Status.FAILED,
                        warnings=warnings, error=Failure("IntegrityError", outcome.summary()))


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """``read_back``: walk the new snapshots and confirm their blobs and packs exist;
    ``check_subset``: also run ``check --read-data-subset`` with it ('' for no)."""

    read_back: bool = True
    check_subset: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyOutcome(Outcome):
    """What was verified."""

    snapshots: int = 0
    trees: int = 0
    data_blobs: int = 0
    packs: int = 0
    check_subset: str = ""
    packs_read: int = 0


def read_back(repo: Repository, snapshot_id: str) -> tuple[int, int, set[bytes]]:
    """Walk snapshot ``snapshot_id``; return (trees, data blobs, packs referenced). Raise
    IntegrityError for a tree that cannot be read or a blob missing from the index."""
    repo.load_index()
    sn = repo.load_snapshot(snapshot_id)
    trees = blobs = 0
    packs: set[bytes] = set()
    stack = [sn.tree]
    seen: set[bytes] = set()
    while stack:
        tree_id = stack.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        trees += 1
        for node in repo.load_tree(tree_id):
            if node.subtree is not None:
                stack.append(node.subtree)
            for blob in node.content or ():
                entry = repo.index.lookup(BlobType.DATA, blob)
                if entry is None:
                    raise IntegrityError(f"snapshot {sn.short_id}: data blob {blob.hex()[:16]} "
                                         f"of '{show_name(node.name)}' is not in the index")
                blobs += 1
                packs.add(entry.pack_id)
    return trees, blobs, packs


def verify_snapshots(repo: Repository, snapshot_ids: Sequence[str], options: VerifyOptions,
                     *, lock_wait: float = 0.0) -> VerifyOutcome:
    """Verify the snapshots ``snapshot_ids`` per ``options``. Raise IntegrityError on the
    first problem."""
    started = time.monotonic()
    trees = blobs = 0
    packs: set[bytes] = set()
    if options.read_back:
        for snapshot_id in snapshot_ids:
            t, b, p = read_back(repo, snapshot_id)
            trees, blobs = trees + t, blobs + b
            packs |= p
        sizes = {bytes.fromhex(i.name): i.size for i in repo.storage.list(FileType.DATA)}
        for pack in packs:
            if pack not in sizes:
                raise IntegrityError(f"pack {pack.hex()} referenced by the new snapshot is "
                                     "missing from the repository")
        repo.storage.stat(Handle(FileType.CONFIG))
    packs_read = 0
    if options.check_subset:
        outcome = check(repo, CheckOptions(read_data_subset=options.check_subset),
                        lock_wait=lock_wait)
        packs_read = outcome.report.packs_read
        if not outcome.report.ok:
            raise IntegrityError(f"check --read-data-subset {options.check_subset}: "
                                 + outcome.report.errors[0])
    return VerifyOutcome(snapshots=len(snapshot_ids), trees=trees, data_blobs=blobs,
                         packs=len(packs), check_subset=options.check_subset,
                         packs_read=packs_read, duration=time.monotonic() - started)
