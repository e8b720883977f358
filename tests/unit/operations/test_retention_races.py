"""retention decides twice: without the lock, then under it. The second decision reads only
the snapshot files it has not read yet, and must be the one a fresh look would take."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from airflow_backup.operations.retention import RetentionRequest, retention
from airflow_backup.repository.forget import Duration, ExpirePolicy, apply_policy
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_ns
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.memory import MemoryStorage

BASE = 1_760_000_000 * 1_000_000_000
MINUTE = 60 * 1_000_000_000


def _save(repo: Repository, minutes: int, host: str = "h") -> str:
    return repo.save_snapshot(Snapshot(time=format_ns(BASE + minutes * MINUTE, 0),
                                       tree=bytes(32), paths=["/data"], hostname=host))


def _repo(count: int) -> tuple[Repository, list[str]]:
    repo = Repository.init(MemoryStorage(), "pw")
    return repo, [_save(repo, i) for i in range(count)]


def _meanwhile(repo: Repository, monkeypatch: pytest.MonkeyPatch, change: object) -> None:
    """Run ``change`` as another process would between the two decisions: just before the
    lock is taken."""
    lock = repo.lock

    @contextlib.contextmanager
    def changed_then_locked(*args: object, **kwargs: object) -> Iterator[object]:
        change()  # type: ignore[operator]
        with lock(*args, **kwargs) as held:  # type: ignore[arg-type]
            yield held

    monkeypatch.setattr(repo, "lock", changed_then_locked)


def _count_loads(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []
    load = repo.load_snapshot

    def counting(name: str) -> Snapshot:
        loaded.append(name)
        return load(name)

    monkeypatch.setattr(repo, "load_snapshot", counting)
    return loaded


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_snapshot_written_between_the_decisions_is_kept_and_counted(
    monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    repo, ids = _repo(5)
    new: list[str] = []
    _meanwhile(repo, monkeypatch, lambda: new.append(_save(repo, 100)))
    outcome = retention(repo, RetentionRequest(policy=ExpirePolicy(last=3), dry_run=dry_run))
    # Decided on the six snapshots there are under the lock: the new one is the newest.
    assert new[0] not in outcome.removed
    assert set(outcome.removed) == set(ids[:3])
    assert outcome.kept == 3
    kept = {sn.id for g in outcome.groups for sn in g.result.keep}
    assert kept == {new[0], ids[4], ids[3]}
    left = {i.name for i in repo.storage.list(FileType.SNAPSHOT)}
    assert left == (set(ids) | set(new)) if dry_run else left == {new[0], ids[4], ids[3]}


def test_an_old_snapshot_written_between_the_decisions_is_judged_by_the_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, ids = _repo(4)
    new: list[str] = []
    _meanwhile(repo, monkeypatch, lambda: new.append(_save(repo, -10)))
    outcome = retention(repo, RetentionRequest(policy=ExpirePolicy(last=2)))
    assert set(outcome.removed) == {new[0], ids[0], ids[1]}
    assert {i.name for i in repo.storage.list(FileType.SNAPSHOT)} == {ids[2], ids[3]}


def test_a_snapshot_removed_between_the_decisions_is_not_removed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, ids = _repo(5)
    _meanwhile(repo, monkeypatch, lambda: repo.remove_snapshot(ids[0]))
    outcome = retention(repo, RetentionRequest(policy=ExpirePolicy(last=2)))
    assert set(outcome.removed) == {ids[1], ids[2]}
    assert {i.name for i in repo.storage.list(FileType.SNAPSHOT)} == {ids[3], ids[4]}


def test_a_damaged_file_written_between_the_decisions_is_recorded_as_a_listing_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, ids = _repo(4)
    bad = "ab" * 32
    _meanwhile(repo, monkeypatch,
               lambda: repo.storage.save(Handle(FileType.SNAPSHOT, bad), b"not sealed"))
    outcome = retention(repo, RetentionRequest(policy=ExpirePolicy(last=2)))
    assert set(outcome.removed) == {ids[0], ids[1]}
    assert set(repo.damaged_snapshots) == {bad}


def test_unchanged_snapshots_are_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    repo, ids = _repo(6)
    loaded = _count_loads(repo, monkeypatch)
    reads_before_lock: list[int] = []
    _meanwhile(repo, monkeypatch, lambda: reads_before_lock.append(len(loaded)))
    outcome = retention(repo, RetentionRequest(policy=ExpirePolicy(last=2)))
    assert set(outcome.removed) == set(ids[:4])
    assert sorted(loaded) == sorted(ids)  # each file read once, none under the lock
    assert reads_before_lock == [len(ids)]


def test_new_files_are_the_only_ones_read_under_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, ids = _repo(6)
    loaded = _count_loads(repo, monkeypatch)
    new: list[str] = []
    _meanwhile(repo, monkeypatch, lambda: new.append(_save(repo, 50)))
    retention(repo, RetentionRequest(policy=ExpirePolicy(last=2)))
    assert sorted(loaded) == sorted(ids + new)


def test_a_within_policy_is_decided_again_under_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``within`` measures from the latest snapshot not in the future, which the clock
    decides: the policy is applied again even if no snapshot changed."""
    repo, _ = _repo(3)
    calls: list[int] = []
    import airflow_backup.operations.retention as retention_mod

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return apply_policy(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retention_mod, "apply_policy", counting)
    retention(repo, RetentionRequest(policy=ExpirePolicy(last=1)))
    assert len(calls) == 1  # no clock in it, the same snapshots under the lock: kept
    calls.clear()
    retention(repo, RetentionRequest(policy=ExpirePolicy(within=Duration(days=1)),
                                     dry_run=True))
    assert len(calls) == 2


def test_a_refused_empty_policy_reads_no_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_backup.errors import ConfigError

    repo, _ = _repo(3)
    loaded = _count_loads(repo, monkeypatch)
    with pytest.raises(ConfigError, match="no policy was specified"):
        retention(repo, RetentionRequest())
    assert loaded == []
