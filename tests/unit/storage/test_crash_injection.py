"""FaultInjectingStorage: fires exactly at the k-th counted operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_backup.errors import ConfigError, InjectedFault
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.crash import CrashInjectingStorage, Fault, wrap_from_env
from airflow_backup.storage.memory import MemoryStorage


def _h(i: int) -> Handle:
    return Handle(FileType.SNAPSHOT, f"{i:064x}")


def test_raise_fails_the_kth_operation_without_doing_it() -> None:
    inner = MemoryStorage()
    fs = CrashInjectingStorage(inner, fail_at=3, fault=Fault.RAISE)
    fs.save(_h(1), b"1")
    fs.save(_h(2), b"2")
    with pytest.raises(InjectedFault, match="operation 3: save"):
        fs.save(_h(3), b"3")
    assert not inner.exists(_h(3))
    fs.remove(_h(1))  # later operations go through again
    assert not inner.exists(_h(1)) and fs.count == 4


def test_kill_completes_the_operation_then_kills() -> None:
    inner = MemoryStorage()
    killed: list[int] = []
    journal: list[str] = []
    fs = CrashInjectingStorage(inner, fail_at=2, fault=Fault.KILL,
                               journal=lambda op, h: journal.append(f"{op} {h}"),
                               on_kill=lambda: killed.append(len(journal)))
    fs.save(_h(1), b"1")
    assert killed == []
    fs.remove(_h(1))
    assert killed == [2] and not inner.exists(_h(1))
    assert journal == [f"save snapshots/{1:064x}", f"remove snapshots/{1:064x}"]


def test_only_counted_operations_count_and_reads_pass_through() -> None:
    inner = MemoryStorage()
    fs = CrashInjectingStorage(inner, fail_at=1, operations=["remove"])
    fs.save(_h(1), b"abc")
    assert fs.load(_h(1), 1, 1) == b"b" and fs.stat(_h(1)).size == 3
    assert [i.name for i in fs.list(FileType.SNAPSHOT)] == [f"{1:064x}"]
    with pytest.raises(InjectedFault):
        fs.remove(_h(1))
    with pytest.raises(ConfigError):
        CrashInjectingStorage(inner, fail_at=1, operations=["load"])


def test_wrap_from_env(tmp_path: Path) -> None:
    inner = MemoryStorage()
    assert wrap_from_env(inner, {}) is inner
    journal = tmp_path / "ops.log"
    fs = wrap_from_env(inner, {"AIRFLOW_BACKUP_FAULT_AT": "2",
                               "AIRFLOW_BACKUP_FAULT_MODE": "raise",
                               "AIRFLOW_BACKUP_FAULT_JOURNAL": str(journal)})
    fs.save(_h(1), b"1")
    with pytest.raises(InjectedFault):
        fs.save(_h(2), b"2")
    assert journal.read_text() == f"save snapshots/{1:064x}\n"
    with pytest.raises(ConfigError):
        wrap_from_env(inner, {"AIRFLOW_BACKUP_FAULT_AT": "x"})
