"""The verify step: read the new snapshots back from the repository they landed in.

``read_back`` loads each snapshot and walks its whole tree (every tree blob is read, MAC and
hash checked) and confirms that every data blob it references is in the index and that the
packs holding them exist with the indexed size. ``check_subset`` additionally runs
``check --read-data-subset`` (a share of all packs read and verified).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_backup.errors import IntegrityError
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.steps.common import JobSession, StepResult
from airflow_backup.jobs.steps.store import StoreResult
from airflow_backup.repository.check import CheckOptions, check_repository
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import FileType, Handle

__all__ = ["VerifyResult", "read_back", "verify_step"]


@dataclass(frozen=True, slots=True)
class VerifyResult(StepResult):
    """What was verified."""

    job: str
    snapshots: int = 0
    trees: int = 0
    data_blobs: int = 0
    packs: int = 0
    check_subset: str = ""
    packs_read: int = 0
    errors: list[str] = field(default_factory=list)


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
                                         f"of {node.name!r} is not in the index")
                blobs += 1
                packs.add(entry.pack_id)
    return trees, blobs, packs


def verify_step(config: Config, store: StoreResult,
                session: JobSession | None = None) -> VerifyResult:
    """Verify the stored snapshots per the job's verification settings. Raise
    IntegrityError on the first problem."""
    session = session or JobSession(config)
    settings = config.jobs[store.job].verification
    repo = session.repository(store.repository,
                              primary=store.repository == config.jobs[store.job].repository)
    trees = blobs = 0
    packs: set[bytes] = set()
    if settings.read_back:
        for snap in store.snapshots:
            t, b, p = read_back(repo, str(snap["id"]))
            trees, blobs = trees + t, blobs + b
            packs |= p
        sizes = {bytes.fromhex(i.name): i.size for i in repo.storage.list(FileType.DATA)}
        for pack in packs:
            if pack not in sizes:
                raise IntegrityError(f"pack {pack.hex()} referenced by the new snapshot is "
                                     "missing from the repository")
        repo.storage.stat(Handle(FileType.CONFIG))
    packs_read = 0
    if settings.check_subset:
        with repo.lock(exclusive=False,
                       retry_seconds=config.repositories[store.repository].lock_wait):
            report = check_repository(repo, CheckOptions(read_data_subset=settings.check_subset))
        packs_read = report.packs_read
        if not report.ok:
            raise IntegrityError(f"check --read-data-subset {settings.check_subset}: "
                                 + report.errors[0])
    return VerifyResult(store.job, len(store.snapshots), trees, blobs, len(packs),
                        settings.check_subset, packs_read)
