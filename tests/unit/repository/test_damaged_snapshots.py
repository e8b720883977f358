"""A damaged or malformed snapshot file is skipped (with a warning) by everything that lists
snapshots, stays removable by its id, and does not stop prune; a malformed index entry is an
IntegrityError at once, never retried as a storage failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_backup.errors import IntegrityError, SnapshotNotFound
from airflow_backup.operations.retention import RetentionRequest, retention
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.prune import execute_prune, plan_prune
from airflow_backup.repository.repair import repair_snapshots
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import (
    find_snapshot,
    find_snapshot_as_of,
    resolve_snapshot,
    select_snapshots,
)
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.unpacked import save_json
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage import FileType, Handle, MemoryStorage
from airflow_backup.storage.local import LocalStorage
from airflow_backup.storage.retry import RetryingStorage, RetryPolicy

Backup = Callable[..., Snapshot]
FAST = KdfParams(1024, 8, 1)


def _flip_a_byte(storage: MemoryStorage, snap_id: str) -> None:
    handle = Handle(FileType.SNAPSHOT, snap_id)
    raw = bytearray(storage.load(handle))
    raw[len(raw) // 2] ^= 1
    storage.corrupt(handle, bytes(raw))


@pytest.fixture
def repo_with_damage(backup: Backup) -> tuple[Repository, Snapshot, str, str]:
    """A repository with a good snapshot, one whose file has a flipped byte, and one whose
    time is not RFC 3339; returns (repo, good, flipped id, bad-time id)."""
    storage = MemoryStorage()
    repo = Repository.init(storage, "pw", kdf=FAST)
    flipped = backup(repo, {"a.txt": b"only in the flipped snapshot " * 50})
    good = backup(repo, {"b.txt": b"in the good snapshot " * 50})
    bad_time = repo.save_snapshot(Snapshot(time="last tuesday", tree=good.tree,
                                           paths=list(good.paths)))
    _flip_a_byte(storage, flipped.id)
    return Repository.open(storage, "pw"), good, flipped.id, bad_time


def test_listing_skips_damaged_files_records_them_and_warns_once(
        repo_with_damage: tuple[Repository, Snapshot, str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    repo, good, flipped, bad_time = repo_with_damage
    with caplog.at_level(logging.WARNING, logger="airflow_backup"):
        assert [s.id for s in repo.list_snapshots()] == [good.id]
        assert [s.id for s in repo.list_snapshots()] == [good.id]
    assert dict(repo.damaged_snapshots) == {
        flipped: f"snapshots/{flipped}: content does not match its id",
        bad_time: f"snapshots/{bad_time}: malformed snapshot: time: not an RFC 3339 time: "
                  "a string 'last tuesday'",
    }
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        f"skipping damaged snapshot file: {why}" for why in repo.damaged_snapshots.values())


def test_selection_finds_only_good_snapshots_but_names_damaged_ones_by_id(
        repo_with_damage: tuple[Repository, Snapshot, str, str]) -> None:
    repo, good, flipped, bad_time = repo_with_damage
    assert [s.id for s in select_snapshots(repo)] == [good.id]
    assert find_snapshot(repo, "latest").id == good.id
    assert resolve_snapshot(repo, good.id[:6]).id == good.id
    assert find_snapshot_as_of(repo, 2**62).id == good.id
    # Named by id (a prefix too), a damaged file is a stand-in to remove, or an error to use.
    stand_ins = select_snapshots(repo, ids=[flipped[:10], bad_time])
    assert [(s.id, s.damaged) for s in stand_ins] == [
        (flipped, repo.damaged_snapshots[flipped]), (bad_time, repo.damaged_snapshots[bad_time])]
    with pytest.raises(IntegrityError, match=f"^snapshots/{flipped}: content does not match"):
        find_snapshot(repo, flipped[:8])
    with pytest.raises(IntegrityError, match=f"^snapshots/{flipped}: "):
        _ = stand_ins[0].time_ns  # a stand-in has no time: it never sorts among snapshots
    with pytest.raises(SnapshotNotFound):
        select_snapshots(repo, ids=["0123456789abcdef"])


def test_forget_by_id_removes_damaged_files(
        repo_with_damage: tuple[Repository, Snapshot, str, str]) -> None:
    repo, good, flipped, bad_time = repo_with_damage
    outcome = retention(repo, RetentionRequest(ids=(flipped[:8], bad_time)))
    assert set(outcome.removed) == {flipped, bad_time}
    assert {i.name for i in repo.storage.list(FileType.SNAPSHOT)} == {good.id}
    assert [s.id for s in repo.list_snapshots()] == [good.id]
    assert dict(repo.damaged_snapshots) == {}


def test_repair_snapshots_removes_a_damaged_file_only_with_forget(
        repo_with_damage: tuple[Repository, Snapshot, str, str]) -> None:
    repo, good, flipped, _ = repo_with_damage
    [kept] = repair_snapshots(repo, select_snapshots(repo, ids=[flipped]))
    assert (kept.status, kept.snapshot.id) == ("damaged", flipped)
    [dry] = repair_snapshots(repo, select_snapshots(repo, ids=[flipped]), forget=True,
                             dry_run=True)
    assert dry.status == "removed"
    assert repo.storage.exists(Handle(FileType.SNAPSHOT, flipped))
    results = repair_snapshots(repo, select_snapshots(repo, ids=[flipped, good.id]),
                               forget=True)
    assert [(r.snapshot.id, r.status) for r in results] == [(flipped, "removed"),
                                                            (good.id, "unchanged")]
    assert not repo.storage.exists(Handle(FileType.SNAPSHOT, flipped))


def test_prune_treats_a_damaged_snapshot_as_gone_and_keeps_what_good_ones_need(
        repo_with_damage: tuple[Repository, Snapshot, str, str]) -> None:
    repo, good, _, _ = repo_with_damage
    with repo.lock(exclusive=True):
        plan = plan_prune(repo)
        assert plan.stats.unused_blobs > 0  # the flipped snapshot's file data
        execute_prune(repo, plan)
    fresh = Repository.open(repo.storage, "pw")
    fresh.load_index()
    files = {p.rsplit(b"/", 1)[-1]: n for p, n in walk_tree(fresh, good.tree)
             if n.type == "file"}
    assert set(files) == {b"b.txt"}
    assert b"".join(fresh.load_blob(BlobType.DATA, c) for c in files[b"b.txt"].content or []) \
        == b"in the good snapshot " * 50


def test_the_prune_operation_refuses_while_a_damaged_snapshot_file_is_there(
        repo_with_damage: tuple[Repository, Snapshot, str, str]) -> None:
    from airflow_backup.errors import IntegrityError
    from airflow_backup.operations.retention import prune
    from airflow_backup.repository.prune import PruneOptions

    repo, _, _, _ = repo_with_damage
    before = sorted(i.name for i in repo.storage.list(FileType.DATA))
    with repo.lock(exclusive=True), pytest.raises(IntegrityError, match="forget"):
        prune(repo, PruneOptions())
    assert sorted(i.name for i in repo.storage.list(FileType.DATA)) == before
    assert prune(repo, PruneOptions(), dry_run=True).plan.stats.unused_blobs > 0


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("offset", -1, "a number -1 is out of range 0..4294967295"),
    ("length", 2**40, "a number 1099511627776 is out of range 32..4294967295"),
    ("length", 5, "a number 5 is out of range 32..4294967295"),
])
def test_a_bad_index_entry_is_an_integrity_error_at_once_never_retried(
        tmp_path: Path, field: str, value: int, problem: str) -> None:
    """Before: the entry loaded, and reading the blob at offset -1 failed in the store as a
    transient error, retried with backoff for 47 s (a length of 2^40 asked the store for a
    terabyte: ENOMEM)."""
    repo = Repository.init(LocalStorage(tmp_path), "pw", kdf=FAST)
    blob_id, _ = repo.save_blob(BlobType.DATA, b"some data")
    repo.flush()
    [index_file] = repo.list_index_ids()
    [(pack_id, [blob])] = repo.load_index_file(index_file).items()
    entry = {"id": blob_id.hex(), "type": "data", "offset": blob.offset,
             "length": blob.length, field: value}
    obj = {"packs": [{"id": pack_id.hex(), "blobs": [entry]}]}
    repo.storage.remove(Handle(FileType.INDEX, index_file))
    bad_index = save_json(repo.storage, repo.key, FileType.INDEX, obj, 2)

    sleeps: list[float] = []
    storage = RetryingStorage(LocalStorage(tmp_path), RetryPolicy(max_elapsed=47),
                              sleep=sleeps.append)
    reopened = Repository.open(storage, "pw")
    with pytest.raises(IntegrityError) as caught:
        reopened.load_index()
        reopened.load_blob(BlobType.DATA, blob_id)
    assert str(caught.value) == \
        f"index/{bad_index}: malformed index: packs[0].blobs[0].{field}: {problem}"
    assert caught.value.retryable is False
    assert sleeps == [] and storage.retries == 0
