"""Fallback repositories (engine): which errors fall back, what the result and snapshot say."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_backup.archiver.archive import BackupOptions
from airflow_backup.errors import ConfigError, StorageError, WrongPassword
from airflow_backup.jobs.fallback import RepositoryTarget, backup_with_fallback
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.compose import open_repository_storage
from airflow_backup.storage.faults import FaultInjectingStorage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.retry import RetryPolicy

KDF = KdfParams(1024, 8, 1)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("data\n")
    return tmp_path / "src"


def _target(name: str, store: MemoryStorage, password: str = "pw", **faults: object
            ) -> RepositoryTarget:
    def open_() -> Repository:
        storage = open_repository_storage(
            backend=store, faults=faults or None,
            policy=RetryPolicy(max_attempts=3, base_delay=0.0, max_elapsed=5))
        return Repository.open(storage, password)
    return RepositoryTarget(name, open_)


def _init() -> MemoryStorage:
    store = MemoryStorage()
    Repository.init(store, "pw", kdf=KDF)
    return store


def _snapshots(store: MemoryStorage) -> list[dict[str, object]]:
    repo = Repository.open(store, "pw")
    return [s.to_json() for s in repo.list_snapshots()]


@pytest.mark.parametrize("faults", [
    {"failure_rate": 1.0, "permanent": True, "operations": ["save"]},   # permanent
    {"failure_rate": 1.0, "operations": ["save"]},                      # retries exhausted
])
def test_primary_failure_lands_in_the_first_healthy_fallback(
    src: Path, faults: dict[str, object]
) -> None:
    primary, broken_fb, good_fb = _init(), MemoryStorage(), _init()  # broken: no repository
    result = backup_with_fallback(
        [_target("primary", primary, **faults), _target("fb1", broken_fb),
         _target("fb2", good_fb)],
        BackupOptions(paths=[str(src)]))
    assert result.degraded and result.index == 2 and result.location == "fb2"
    assert [loc for loc, _ in result.failures] == ["primary", "fb1"]
    assert "StorageError" in result.failures[0][1]
    assert "RepositoryNotFound" in result.failures[1][1]
    assert _snapshots(primary) == []
    (snap,) = _snapshots(good_fb)
    marker = snap["airflow_backup"]["degraded"]  # type: ignore[index]
    assert marker["primary"] == "primary"
    assert len(marker["reasons"]) == 2


def test_a_healthy_primary_is_normal_again_after_a_degraded_run(src: Path) -> None:
    primary, fallback = _init(), _init()
    broken = backup_with_fallback(
        [_target("p", primary, failure_rate=1.0, permanent=True), _target("f", fallback)],
        BackupOptions(paths=[str(src)]))
    assert broken.degraded
    normal = backup_with_fallback([_target("p", primary), _target("f", fallback)],
                                  BackupOptions(paths=[str(src)]))
    assert not normal.degraded and normal.failures == [] and normal.reason == ""
    (snap,) = _snapshots(primary)
    assert "airflow_backup" not in snap


def test_errors_that_are_not_storage_failures_do_not_fall_back(src: Path) -> None:
    primary, fallback = _init(), _init()
    with pytest.raises(ConfigError):
        backup_with_fallback([_target("p", primary), _target("f", fallback)],
                             BackupOptions(paths=[str(src / "missing")]))
    with pytest.raises(WrongPassword):
        backup_with_fallback([_target("p", primary, password="wrong"), _target("f", fallback)],
                             BackupOptions(paths=[str(src)]))
    assert _snapshots(fallback) == []


def test_every_repository_failing_raises_storage_error(src: Path) -> None:
    with pytest.raises(StorageError, match=r"no repository could take the backup: a: .*; b: "):
        backup_with_fallback([_target("a", MemoryStorage()), _target("b", MemoryStorage())],
                             BackupOptions(paths=[str(src)]))


def test_fault_wrapper_keeps_keyword_only_constructor() -> None:
    with pytest.raises(TypeError):
        FaultInjectingStorage(MemoryStorage(), 0.5)  # type: ignore[misc]
