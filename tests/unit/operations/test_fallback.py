"""Fallback repositories (the backup operation): which errors fall back, what the outcome and
snapshot say, and that a wrapping error keeps its cause's retryability and exit code."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from airflow_backup.errors import (
    ConfigError,
    NoRepositoryAvailable,
    RepositoryNotFound,
    StorageError,
    TransientStorageError,
    WrongPassword,
)
from airflow_backup.operations.backup import BackupOutcome, BackupRequest, backup
from airflow_backup.operations.outcome import Status
from airflow_backup.operations.spec import PasswordKind, PasswordSource, RepositorySpec
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
            ) -> RepositorySpec:
    def storage() -> object:
        return open_repository_storage(
            backend=store, faults=faults or None,
            policy=RetryPolicy(max_attempts=3, base_delay=0.0, max_elapsed=5))
    return RepositorySpec(name, PasswordSource(PasswordKind.VALUE, password), name=name,
                          storage=storage)  # type: ignore[arg-type]


def backup_with_fallback(specs: list[RepositorySpec], request: BackupRequest) -> BackupOutcome:
    return backup(replace(specs[0], fallbacks=tuple(specs[1:])), request)


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
        BackupRequest(paths=(str(src),)))
    assert result.status is Status.DEGRADED and result.repository == "fb2"
    assert [f.split(": ")[0] for f in result.degraded_reasons] == ["primary", "fb1"]
    assert "StorageError" in result.degraded_reasons[0]
    assert "RepositoryNotFound" in result.degraded_reasons[1]
    assert _snapshots(primary) == []
    (snap,) = _snapshots(good_fb)
    marker = snap["airflow_backup"]["degraded"]  # type: ignore[index]
    assert marker["primary"] == "primary"
    assert len(marker["reasons"]) == 2


def test_a_healthy_primary_is_normal_again_after_a_degraded_run(src: Path) -> None:
    primary, fallback = _init(), _init()
    broken = backup_with_fallback(
        [_target("p", primary, failure_rate=1.0, permanent=True), _target("f", fallback)],
        BackupRequest(paths=(str(src),)))
    assert broken.status is Status.DEGRADED
    normal = backup_with_fallback([_target("p", primary), _target("f", fallback)],
                                  BackupRequest(paths=(str(src),)))
    assert normal.status is Status.SUCCESS and normal.degraded_reasons == ()
    (snap,) = _snapshots(primary)
    assert "airflow_backup" not in snap


def test_errors_that_are_not_storage_failures_do_not_fall_back(src: Path) -> None:
    primary, fallback = _init(), _init()
    with pytest.raises(ConfigError):
        backup_with_fallback([_target("p", primary), _target("f", fallback)],
                             BackupRequest(paths=(str(src / "missing"),)))
    with pytest.raises(WrongPassword):
        backup_with_fallback([_target("p", primary, password="wrong"), _target("f", fallback)],
                             BackupRequest(paths=(str(src),)))
    assert _snapshots(fallback) == []


def test_every_repository_failing_raises_storage_error(src: Path) -> None:
    with pytest.raises(StorageError, match=r"no repository could take the backup: a: .*; b: "):
        backup_with_fallback([_target("a", MemoryStorage()), _target("b", MemoryStorage())],
                             BackupRequest(paths=(str(src),)))


def test_wrapping_keeps_the_causes_retryability_and_the_primarys_exit_code(src: Path) -> None:
    # Every repository down for a while: a retry may help, so the error stays retryable.
    down = {"failure_rate": 1.0, "operations": ["save"]}
    with pytest.raises(NoRepositoryAvailable) as info:
        backup_with_fallback([_target("a", _init(), **down), _target("b", _init(), **down)],
                             BackupRequest(paths=(str(src),)))
    assert info.value.retryable and isinstance(info.value.__cause__, TransientStorageError)
    # No repository anywhere: retrying cannot help, and the exit code is restic's 10.
    with pytest.raises(NoRepositoryAvailable) as info:
        backup_with_fallback([_target("a", MemoryStorage()), _target("b", MemoryStorage())],
                             BackupRequest(paths=(str(src),)))
    assert not info.value.retryable
    assert all(isinstance(c, RepositoryNotFound) for c in info.value.causes)


def test_without_fallbacks_the_primarys_error_is_raised_unchanged(src: Path) -> None:
    with pytest.raises(RepositoryNotFound):
        backup_with_fallback([_target("a", MemoryStorage())], BackupRequest(paths=(str(src),)))
    with pytest.raises(TransientStorageError):
        backup_with_fallback([_target("a", _init(), failure_rate=1.0, operations=["save"])],
                             BackupRequest(paths=(str(src),)))


def test_fault_wrapper_keeps_keyword_only_constructor() -> None:
    with pytest.raises(TypeError):
        FaultInjectingStorage(MemoryStorage(), 0.5)  # type: ignore[misc]
