"""The Backups page's data (operations/overview.py): the snapshot cache reads each snapshot
file once, notices new and removed ones, serves what it has while a refresh is due, reports
an unreadable repository; a job's state is the worst of its findings."""

from __future__ import annotations

import threading
from dataclasses import replace

from airflow_backup.errors import StorageError
from airflow_backup.operations.overview import JobState, SnapshotCache, job_overview
from airflow_backup.operations.spec import PasswordKind, PasswordSource, RepositorySpec
from airflow_backup.operations.status import JobWatch
from airflow_backup.operations.tags import DRILL_TAG, drill_tag, job_tag
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot, SnapshotSummary
from airflow_backup.repository.timefmt import format_time
from airflow_backup.storage.base import FileType
from airflow_backup.storage.memory import MemoryStorage

KDF = KdfParams(1024, 8, 1)
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class CountingRepo:
    """Opens the repository and counts snapshot loads."""

    def __init__(self, store: MemoryStorage) -> None:
        self.store, self.loads, self.fail = store, 0, False
        self.gate: threading.Event | None = None  # loads wait for it when set

    def __call__(self, spec: RepositorySpec) -> Repository:
        if self.fail:
            raise StorageError("store unreachable")
        repo = Repository.open(self.store, "pw")
        load = repo.load_snapshot

        def counted(snapshot_id: str) -> Snapshot:
            if self.gate is not None:
                self.gate.wait(10)
            self.loads += 1
            return load(snapshot_id)
        repo.load_snapshot = counted  # type: ignore[method-assign]
        return repo


def _spec() -> RepositorySpec:
    return RepositorySpec("mem", PasswordSource(PasswordKind.VALUE, "pw"), name="main")


def _save(store: MemoryStorage, job: str, age: float, *tags: str, added: int = 10,
          extra: dict[str, object] | None = None) -> str:
    from datetime import UTC, datetime

    repo = Repository.open(store, "pw")
    when = datetime.fromtimestamp(NOW - age, UTC)
    sn = Snapshot(time=format_time(when), tree=b"\0" * 32, paths=["/d"],
                  tags=[job_tag(job), *tags], extra=dict(extra or {}),  # type: ignore[arg-type]
                  summary=SnapshotSummary(data_added_packed=added, total_bytes_processed=100))
    return repo.save_snapshot(sn)


def _store() -> MemoryStorage:
    store = MemoryStorage()
    Repository.init(store, "pw", kdf=KDF)
    return store


def test_each_snapshot_file_is_read_once_and_removed_ones_are_forgotten() -> None:
    store, clock = _store(), Clock()
    repo = CountingRepo(store)
    cache = SnapshotCache(ttl=10, background=False, opener=repo, clock=clock)
    first = _save(store, "a", 3600)
    _save(store, "a", 60)
    assert len(cache.snapshots(_spec())) == 2 and repo.loads == 2
    _save(store, "a", 30)
    assert len(cache.snapshots(_spec())) == 2  # within the ttl: as read before
    clock.t = 11
    assert len(cache.snapshots(_spec())) == 3 and repo.loads == 3  # only the new file
    store.remove(next(h for h in _handles(store) if h.name == first))
    clock.t = 22
    assert [s.id for s in cache.snapshots(_spec())].count(first) == 0
    assert repo.loads == 3
    info = cache.info(_spec())
    assert info.healthy and info.snapshots == 2 and info.size and info.size > 0


def _handles(store: MemoryStorage) -> list[object]:
    from airflow_backup.storage.base import Handle

    return [Handle(FileType.SNAPSHOT, i.name) for i in store.list(FileType.SNAPSHOT)]


def test_a_due_refresh_runs_in_the_background_and_serves_what_it_has() -> None:
    store, clock = _store(), Clock()
    repo = CountingRepo(store)
    cache = SnapshotCache(ttl=10, opener=repo, clock=clock)
    _save(store, "a", 60)
    assert len(cache.snapshots(_spec())) == 1
    _save(store, "a", 30)
    clock.t = 11
    repo.gate = threading.Event()  # the refresh waits until the reader has been served
    assert len(cache.snapshots(_spec())) == 1  # served at once; the refresh is started
    repo.gate.set()
    for thread in threading.enumerate():
        if thread.name == "airflow-backup-snapshot-cache":
            thread.join(10)
    assert len(cache.snapshots(_spec())) == 2


def test_an_unreadable_repository_is_reported_and_makes_the_job_degraded() -> None:
    store, clock = _store(), Clock()
    repo = CountingRepo(store)
    repo.fail = True
    cache = SnapshotCache(background=False, opener=repo, clock=clock)
    watch = JobWatch("a", _spec(), rpo=3600)
    ov = job_overview(watch, cache, now=NOW)
    assert ov.repositories[0].problem.endswith("store unreachable")
    assert ov.state is JobState.RPO_BREACHED  # no snapshot readable anywhere
    assert any("repository unreadable" in r for r in ov.reasons)


def test_states_from_ok_to_failed() -> None:
    store = _store()
    cache = SnapshotCache(background=False, opener=CountingRepo(store))
    watch = JobWatch("a", _spec(), rpo=3600, max_rto=60, drill_max_age=86400)
    _save(store, "a", 120, added=5)
    _save(store, "a", 7200, added=7)
    _save(store, "a", 100, DRILL_TAG, drill_tag("a"),
          extra={"airflow_backup": {"drill": {"ok": True, "rto": 12.5}}})
    _save(store, "other", 10)
    ov = job_overview(watch, cache, now=NOW)
    assert ov.state is JobState.OK and ov.reasons == ()
    assert [p.added for p in ov.snapshots] == [7, 5]  # oldest first, the job's backups only
    assert [(d.ok, d.rto) for d in ov.drills] == [(True, 12.5)]
    assert ov.to_json()["snapshot_count"] == 2

    failed = job_overview(watch, cache, now=NOW, last_run_failed="last backup run r1 failed")
    assert failed.state is JobState.FAILED and failed.reasons[0] == "last backup run r1 failed"

    late = job_overview(watch, cache, now=NOW + 7200)
    assert late.state is JobState.RPO_BREACHED
    assert late.reasons[0].startswith("RPO breached: newest backup 2.0h old")

    stale = job_overview(replace(watch, rpo=None), cache, now=NOW + 2 * 86400)
    assert stale.state is JobState.DRILL_STALE


def test_a_degraded_or_partial_newest_backup_makes_the_job_degraded() -> None:
    store = _store()
    cache = SnapshotCache(ttl=0, background=False, opener=CountingRepo(store))
    _save(store, "a", 60, "degraded")
    ov = job_overview(JobWatch("a", _spec(), rpo=3600), cache, now=NOW)
    assert ov.state is JobState.DEGRADED and ov.snapshots[-1].degraded
    _save(store, "b", 60, extra={"airflow_backup": {"partial": True}})
    ov = job_overview(JobWatch("b", _spec(), rpo=3600), cache, now=NOW)
    assert ov.state is JobState.DEGRADED and ov.snapshots[-1].partial
