"""Prune on in-memory repositories: what it keeps, what it frees, its write order, and that an
interruption at any storage operation leaves a repository that checks clean."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable

import pytest

from airflow_backup.errors import InjectedFault, IntegrityError
from airflow_backup.repository.check import CheckOptions, check_repository
from airflow_backup.repository.index import encode_index
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.packer import PackWriter
from airflow_backup.repository.packs import BlobType, PackedBlob
from airflow_backup.repository.prune import (
    PruneOptions,
    execute_prune,
    parse_size,
    plan_prune,
    unused_limit,
)
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.unpacked import save_json
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage.base import FileType, Handle, Storage
from airflow_backup.storage.faults import FaultInjectingStorage
from airflow_backup.storage.memory import MemoryStorage

FAST = KdfParams(1024, 8, 1)
Backup = Callable[..., Snapshot]  # the ``backup`` fixture of conftest.py


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def contents(repo: Repository, sn: Snapshot) -> dict[bytes, bytes]:
    repo.load_index()
    out = {}
    for path, node in walk_tree(repo, sn.tree):
        if node.type == "file":
            out[path] = b"".join(repo.load_blob(BlobType.DATA, c) for c in node.content or [])
    return out


def pack_bytes(storage: Storage) -> int:
    return sum(i.size for i in storage.list(FileType.DATA))


def clone(storage: Storage) -> MemoryStorage:
    copy = MemoryStorage()
    for t in FileType:
        for info in storage.list(t):
            h = Handle(t, info.name)
            copy.save(h, storage.load(h))
    return copy


def history(repo: Repository, backup: Backup) -> list[Snapshot]:
    """Five versions: each adds a file, changes a log and drops the file of three versions
    ago; the oldest three snapshots are then forgotten."""
    snaps = []
    for v in range(5):
        files = {f"v{j}.bin": rand(40_000, j) for j in range(max(0, v - 2), v + 1)}
        files["log.txt"] = f"version {v}\n".encode() * 50
        files["same.txt"] = b"unchanged"
        snaps.append(backup(repo, files))
    for sn in snaps[:3]:
        repo.remove_snapshot(sn.id)
    return snaps[3:]


def test_prune_frees_unreferenced_data_and_keeps_every_kept_snapshot(
    mem_repo: Repository, backup: Backup
) -> None:
    kept = history(mem_repo, backup)
    before = {sn.id: contents(mem_repo, sn) for sn in kept}
    size_before = pack_bytes(mem_repo.storage)
    plan = plan_prune(mem_repo)
    assert plan.stats.unused_blobs > 0 and plan.remove and plan.repack
    result = execute_prune(mem_repo, plan)
    assert result.packs_removed == len(plan.remove) + len(plan.repack)
    assert pack_bytes(mem_repo.storage) < size_before - 40_000  # v0.bin is gone
    fresh = Repository.open(mem_repo.storage, "pw")
    assert {sn.id: contents(fresh, sn) for sn in kept} == before
    assert check_repository(fresh, CheckOptions(read_data=True)).errors == []
    again = plan_prune(fresh)
    assert again.nothing_to_do and again.stats.unused_size == 0


def test_dry_run_plan_changes_nothing(mem_repo: Repository, backup: Backup) -> None:
    history(mem_repo, backup)
    listing = {t: sorted(i.name for i in mem_repo.storage.list(t)) for t in FileType}
    plan = plan_prune(mem_repo)
    assert not plan.nothing_to_do
    assert {t: sorted(i.name for i in mem_repo.storage.list(t)) for t in FileType} == listing


def test_write_order_is_packs_index_old_index_old_packs(mem_repo: Repository,
                                                        backup: Backup) -> None:
    history(mem_repo, backup)
    journal: list[str] = []
    wrapped = FaultInjectingStorage(mem_repo.storage,
                                    journal=lambda op, h: journal.append(f"{op} {h.type.value}"))
    repo = Repository.open(wrapped, "pw")
    execute_prune(repo, plan_prune(repo))
    kinds = [k for i, k in enumerate(journal) if k not in journal[:i]]
    assert kinds == ["save data", "save index", "remove index", "remove data"]


@pytest.mark.parametrize("mode", ["raise"])
def test_interrupted_at_every_operation_the_repository_stays_valid(
    mem_repo: Repository, backup: Backup, mode: str
) -> None:
    kept = history(mem_repo, backup)
    expected = {sn.id: contents(mem_repo, sn) for sn in kept}
    counter = FaultInjectingStorage(clone(mem_repo.storage))
    repo = Repository.open(counter, "pw")
    execute_prune(repo, plan_prune(repo))
    total = counter.mutations
    assert total >= 8
    for k in range(1, total + 1):
        inner = clone(mem_repo.storage)
        repo = Repository.open(FaultInjectingStorage(inner, crash_at=k, crash_mode=mode), "pw")
        with pytest.raises(InjectedFault):
            execute_prune(repo, plan_prune(repo))
        after = Repository.open(inner, "pw")
        report = check_repository(after, CheckOptions(read_data=True))
        assert report.errors == [], f"interrupted at operation {k}: {report.errors}"
        assert {sn.id: contents(after, sn) for sn in kept} == expected
        execute_prune(after, plan_prune(after))
        final = Repository.open(inner, "pw")
        assert plan_prune(final).nothing_to_do, f"second prune left work after k={k}"
        assert check_repository(final).ok


def test_prune_refuses_when_a_needed_pack_is_missing(mem_repo: Repository,
                                                     backup: Backup) -> None:
    kept = history(mem_repo, backup)
    mem_repo.load_index()
    node_blobs = [n.content for _, n in walk_tree(mem_repo, kept[-1].tree) if n.type == "file"]
    entry = mem_repo.index.lookup(BlobType.DATA, node_blobs[0][0])  # type: ignore[index]
    assert entry is not None
    mem_repo.storage.remove(Handle(FileType.DATA, entry.pack_id.hex()))
    names = sorted(i.name for i in mem_repo.storage.list(FileType.DATA))
    with pytest.raises(IntegrityError, match="missing"):
        plan_prune(mem_repo)
    assert sorted(i.name for i in mem_repo.storage.list(FileType.DATA)) == names


def test_stray_packs_and_dangling_index_entries_are_cleaned(mem_repo: Repository,
                                                            backup: Backup) -> None:
    sn = backup(mem_repo, {"a": b"alpha"})
    stray = os.urandom(100)
    stray_id = hashlib.sha256(stray).hexdigest()
    mem_repo.storage.save(Handle(FileType.DATA, stray_id), stray)
    ghost = bytes(32)
    save_json(mem_repo.storage, mem_repo.key, FileType.INDEX, encode_index(
        {ghost: [PackedBlob(BlobType.DATA, b"\1" * 32, 0, 100)]}), 2)
    plan = plan_prune(mem_repo)
    assert plan.unreferenced == {stray_id: 100} and plan.missing_unneeded == {ghost}
    execute_prune(mem_repo, plan)
    fresh = Repository.open(mem_repo.storage, "pw")
    assert not mem_repo.storage.exists(Handle(FileType.DATA, stray_id))
    fresh.load_index()
    assert ghost not in fresh.index.packs()
    assert contents(fresh, sn) == {os.fsencode(backup.src) + b"/a": b"alpha"}  # type: ignore[attr-defined]


def test_duplicate_blobs_keep_exactly_one_copy(mem_repo: Repository, backup: Backup) -> None:
    sn = backup(mem_repo, {"a": rand(30_000, 1)})
    blob = rand(30_000, 1)
    blob_id = hashlib.sha256(blob).digest()
    extra: dict[bytes, list[PackedBlob]] = {}
    writer = PackWriter(mem_repo.storage, mem_repo.key, BlobType.DATA,
                        lambda p, b: extra.__setitem__(p, b))
    writer.add(blob_id, blob)
    writer.flush()
    save_json(mem_repo.storage, mem_repo.key, FileType.INDEX, encode_index(extra), 2)
    fresh = Repository.open(mem_repo.storage, "pw")
    plan = plan_prune(fresh)
    assert plan.stats.duplicate_blobs == 1
    execute_prune(fresh, plan)
    final = Repository.open(mem_repo.storage, "pw")
    copies = [p for _, packs in final.load_index_files() for p, bs in packs.items()
              if any(b.id == blob_id for b in bs)]
    assert len(copies) == 1
    assert contents(final, sn)[os.fsencode(backup.src) + b"/a"] == blob  # type: ignore[attr-defined]


def test_max_unused_decides_whether_partly_used_packs_are_repacked(tmp_path: object,
                                                                   backup: Backup) -> None:
    def setup() -> Repository:
        repo = Repository.init(MemoryStorage(), "pw", kdf=FAST)
        repo.pack_size = 64 * 1024  # so that 40 kB packs count as "large enough"
        first = backup(repo, {f"f{i}": rand(20_000, i) for i in range(8)})
        backup(repo, {f"f{i}": rand(20_000, i) for i in range(5)})
        repo.remove_snapshot(first.id)
        return repo

    lenient = plan_prune(setup(), PruneOptions(max_unused="unlimited"))
    assert lenient.repack == [] and lenient.stats.unused_blobs >= 3
    strict = plan_prune(setup(), PruneOptions(max_unused="0%"))
    assert strict.repack and strict.stats.repack_freed_blobs == 3
    capped = plan_prune(setup(), PruneOptions(max_unused="0%", max_repack_size="1"))
    assert capped.repack == []


def test_option_parsing() -> None:
    assert parse_size("10k") == 10240 and parse_size("2M") == 2 << 20 and parse_size("7") == 7
    assert unused_limit("5%")(95) == pytest.approx(5)
    assert unused_limit("unlimited")(1) == float("inf")
    assert unused_limit("1k")(5) == 1024
    for bad in ("100%", "-1%", "x", "5 MB"):
        with pytest.raises(Exception, match=r"max-unused|size|percentage"):
            unused_limit(bad)


def test_repacked_blobs_keep_their_sealed_bytes(mem_repo: Repository, backup: Backup) -> None:
    """A kept blob moves to its new pack as it was stored (verified first): the same nonce,
    ciphertext and MAC, not compressed and encrypted again."""
    history(mem_repo, backup)

    def sealed_by_blob(repo: Repository) -> dict[tuple[object, bytes], bytes]:
        repo.load_index()
        out = {}
        for e in repo.index.entries():
            data = repo.storage.load(Handle(FileType.DATA, e.pack_id.hex()), e.blob.offset,
                                     e.blob.length)
            out[(e.blob.type, e.blob.id)] = data
        return out

    before = sealed_by_blob(mem_repo)
    plan = plan_prune(mem_repo)
    moved = {(b.type, b.id) for p in plan.repack for b in plan.packs[p]} & plan.keep_blobs
    assert moved  # the history leaves partly used packs to repack
    execute_prune(mem_repo, plan)
    after = sealed_by_blob(Repository.open(mem_repo.storage, "pw"))
    for key in moved:
        assert after[key] == before[key]
