"""WAL-aware retention (:mod:`airflow_backup.pitr.retention`): which base backups and WAL
files are forgotten, over catalogue entries built directly; a property check that what is
kept always passes the gap check; and the whole step on an in-memory repository."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pitr_entries import SIZE, backup_file, base, history, seg, segments

from airflow_backup.archiver.archive import Archiver
from airflow_backup.archiver.options import BackupOptions
from airflow_backup.errors import ConfigError
from airflow_backup.operations.pitr_retention import forget_pitr
from airflow_backup.pitr.catalog import BASE_TAG, CatalogEntry, PitrCatalog
from airflow_backup.pitr.gaps import check_archive, check_wal_archive, segment_name
from airflow_backup.pitr.names import format_lsn
from airflow_backup.pitr.retention import PitrRetentionPolicy, plan_pitr_retention
from airflow_backup.pitr.wal import archive_wal
from airflow_backup.repository.forget import Duration
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.memory import MemoryStorage

KEEP2 = PitrRetentionPolicy(keep_base=2)


def _names(entries: tuple[CatalogEntry, ...]) -> list[str]:
    return sorted(e.name or e.snapshot_id for e in entries)


def test_policy_needs_a_rule_and_a_base_backup() -> None:
    with pytest.raises(ConfigError, match="--keep-base"):
        PitrRetentionPolicy()
    with pytest.raises(ConfigError):
        PitrRetentionPolicy(keep_base=-1)
    with pytest.raises(ConfigError, match="no base backup"):
        plan_pitr_retention([], segments(1, 1, 3), {}, KEEP2)


def test_keep_two_of_three_forgets_the_oldest_and_the_wal_before_the_second() -> None:
    backups = [base("b1", 2, 3), base("b2", 5, 6), base("b3", 8, 9)]
    wal = [*segments(1, 1, 11), backup_file(1, 2), backup_file(1, 5), history(2)]
    plan = plan_pitr_retention(backups, wal, {}, KEEP2)
    assert [b.snapshot_id for b in plan.forget_bases] == ["b1"]
    assert [b.snapshot_id for b in plan.keep_bases] == ["b2", "b3"]
    assert _names(plan.forget_wal) == [
        "000000010000000000000001", "000000010000000000000002",
        "000000010000000000000002.00000028.backup", "000000010000000000000003",
        "000000010000000000000004"]
    assert "00000002.history" in _names(plan.keep_wal)  # never forgotten
    assert plan.floors == {1: "000000010000000000000005"}
    assert set(plan.forget_ids()) == {"b1", *(e.snapshot_id for e in plan.forget_wal)}
    kept = check_wal_archive(plan.keep_bases, plan.keep_wal, {})
    assert kept.ok and kept.earliest == backups[1].meta["stop_time"]


def test_keep_within_counts_back_from_the_newest_base_backup() -> None:
    backups = [base("b1", 2, 3), base("b2", 5, 6), base("b3", 8, 9)]  # 30 s apart
    # 45 s is below restic's unit (hours): keep within 1h keeps all; keep-base 1 + within 0.
    plan = plan_pitr_retention(backups, segments(1, 1, 9), {},
                               PitrRetentionPolicy(keep_within=Duration(hours=1)))
    assert not plan.forget_bases and not plan.forget_wal[1:] and \
        _names(plan.forget_wal) == ["000000010000000000000001"]
    far = [base("b0", 2, 3), base("b1", 5, 6), base("b2", 8, 9)]
    far[0].time = "2024-06-01T00:00:00Z"  # half a year older than the others
    plan = plan_pitr_retention(far, segments(1, 1, 9), {},
                               PitrRetentionPolicy(keep_within=Duration(days=7)))
    assert [b.snapshot_id for b in plan.forget_bases] == ["b0"]
    assert plan.floors == {1: "000000010000000000000005"}


def _two_timelines() -> tuple[list[CatalogEntry], list[CatalogEntry], dict[int, dict[int, int]]]:
    """Timeline 1: segments 1..12 (the old primary went on); timeline 2 branched inside
    segment 6 and has 6..12. Backups: b1 (tl 1, start 2), b2 (tl 1, start 4, ended before
    the switch), b3 (tl 2, start 8), b4 (tl 1 after the switch, start 10)."""
    wal = [*segments(1, 1, 12), seg(1, 6, kind="partial"), history(2), *segments(2, 6, 12)]
    backups = [base("b1", 2, 3), base("b2", 4, 5), base("b3", 8, 9, tli=2),
               base("b4", 10, 11)]
    return backups, wal, {2: {1: 6 * SIZE + 0x2000}}


def test_the_floor_follows_timeline_lineage() -> None:
    backups, wal, hist = _two_timelines()
    plan = plan_pitr_retention(backups, wal, hist, PitrRetentionPolicy(keep_base=3))
    # Kept: b2, b3, b4. Timeline 1 and 2 are related to all of them: floor = b2's start.
    assert [b.snapshot_id for b in plan.forget_bases] == ["b1"]
    assert plan.floors == {1: "000000010000000000000004", 2: "000000020000000000000004"}
    assert _names(plan.forget_wal) == [segment_name(1, n, SIZE) for n in (1, 2, 3)]
    assert check_wal_archive(plan.keep_bases, plan.keep_wal, hist).ok
    # Keep only the newest (b4, timeline 1 after the switch): timeline 2 is related (a
    # child of 1), so its WAL below b4's start goes too; .history stays.
    plan = plan_pitr_retention(backups, wal, hist, PitrRetentionPolicy(keep_base=1))
    assert [b.snapshot_id for b in plan.keep_bases] == ["b4"]
    forgotten = _names(plan.forget_wal)
    assert segment_name(1, 9, SIZE) in forgotten and segment_name(1, 10, SIZE) not in forgotten
    assert segment_name(2, 9, SIZE) in forgotten and segment_name(2, 10, SIZE) not in forgotten
    assert segment_name(1, 6, SIZE) + ".partial" in forgotten
    assert "00000002.history" not in forgotten
    assert check_wal_archive(plan.keep_bases, plan.keep_wal, hist).backups[0].restorable


def test_a_timeline_without_its_history_keeps_all_its_wal() -> None:
    backups, wal, _ = _two_timelines()
    wal = [e for e in wal if e.name != "00000002.history"]
    plan = plan_pitr_retention(backups[:2] + backups[3:], wal, {}, PitrRetentionPolicy(
        keep_base=1))
    assert not [e for e in plan.forget_wal if e.meta["timeline"] == 2]
    assert plan.forget_wal  # timeline 1 below b4's start still goes


def test_a_kept_backup_without_lsns_keeps_all_wal() -> None:
    b = base("b2", 5, 6)
    del b.meta["start_lsn"]
    b.meta["wal_segment_size"] = SIZE
    plan = plan_pitr_retention([base("b1", 2, 3), b], segments(1, 1, 7), {},
                               PitrRetentionPolicy(keep_base=1))
    assert [x.snapshot_id for x in plan.forget_bases] == ["b1"] and not plan.forget_wal


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 3)), min_size=1, max_size=6),
       st.integers(1, 5), st.integers(0, 70))
def test_what_is_kept_always_passes_the_gap_check(spans: list[tuple[int, int]], keep: int,
                                                  switch: int) -> None:
    """Whatever the backups and the keep count, every kept base backup stays restorable,
    nothing at or after the oldest kept start is forgotten, and the kept archive has no
    gap; with a timeline 2 branching at ``switch`` (when inside the archive) too."""
    hist: dict[int, dict[int, int]] = {}
    wal = segments(1, 1, 70)
    if 1 < switch < 70:
        hist = {2: {1: switch * SIZE + 0x100}}
        wal = [*segments(1, 1, switch - 1), history(2), *segments(2, switch, 75)]
    backups = []
    for i, (start, length) in enumerate(sorted(spans)):
        b = base(f"b{i}", start, min(start + length, 69))
        b.time = f"2025-01-0{1 + i % 9}T{i:02d}:00:00Z"
        if hist and start + length >= switch:
            b = base(f"b{i}", max(start, switch), max(start, switch) + length, tli=2)
            b.time = f"2025-01-0{1 + i % 9}T{i:02d}:00:00Z"
        backups.append(b)
    plan = plan_pitr_retention(backups, wal, hist, PitrRetentionPolicy(keep_base=keep))
    report = check_wal_archive(plan.keep_bases, plan.keep_wal, hist)
    assert all(b.restorable for b in report.backups), report.problems()
    assert not report.gaps and report.ok, report.problems()
    floor = min(int(str(b.meta["start_lsn"]).split("/")[1], 16) // SIZE
                for b in plan.keep_bases)
    assert all(int(e.name[16:24], 16) < floor for e in plan.forget_wal)
    assert not [e for e in plan.forget_wal if e.name.endswith(".history")]


# ---- the whole step on an in-memory repository --------------------------------------------


def _base_snapshot(repo: Repository, start: int, stop: int) -> None:
    meta = {"kind": "basebackup", "start_lsn": format_lsn(start * SIZE + 0x28),
            "stop_lsn": format_lsn(stop * SIZE + 0x100),
            "start_wal": segment_name(1, start, SIZE), "timeline": 1, "stop_timeline": 1,
            "start_time": "2025-01-01T00:00:00Z", "stop_time": "2025-01-01T00:00:01Z"}
    Archiver(repo).backup_stream(cast(BinaryIO, io.BytesIO(b"tar" * 100)), "base.tar",
                                 BackupOptions(tags=[BASE_TAG], metadata={"pitr": meta}))


def test_forget_pitr_removes_through_the_retention_operation(tmp_path: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw", kdf=KdfParams(1024, 8, 1))
    catalog = PitrCatalog(repo, tmp_path / "cache")
    wal_dir = tmp_path / "pg_wal"
    wal_dir.mkdir()

    def archive(n: int) -> None:
        path = wal_dir / segment_name(1, n, SIZE)
        path.write_bytes(bytes([n]) * 4096)
        archive_wal(repo, catalog, path)

    for n in range(1, 10):
        if n in (2, 5, 8):
            _base_snapshot(repo, n, n)
        archive(n)
    report = check_archive(repo, catalog)
    assert report.ok, report.problems()

    dry = forget_pitr(repo, catalog, KEEP2, dry_run=True, prune=True)
    assert dry.outcome is not None and dry.outcome.dry_run
    assert len(repo.list_snapshots()) == 12  # nothing removed

    done = forget_pitr(repo, catalog, KEEP2, prune=True)
    assert done.outcome is not None and done.outcome.pruned is not None
    assert _names(done.plan.forget_wal) == [segment_name(1, n, SIZE) for n in range(1, 5)]
    left = {s.id for s in repo.list_snapshots()}
    assert left.isdisjoint(done.plan.forget_ids()) and len(left) == 12 - 5
    assert check_archive(repo, catalog).ok
    # Forgetting a WAL snapshot in the middle makes the check name it.
    victim = next(e for e in catalog.entries("wal")
                  if e.name == segment_name(1, 7, SIZE))
    repo.remove_snapshot(victim.snapshot_id)
    report = check_archive(repo, catalog)
    assert not report.ok and [g.first for g in report.gaps] == [segment_name(1, 7, SIZE)]
    # Again: nothing more to forget.
    again = forget_pitr(repo, catalog, KEEP2)
    assert again.outcome is None and not again.plan.forget_ids()
