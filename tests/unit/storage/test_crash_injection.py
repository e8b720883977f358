"""FaultInjectingStorage's crash hook: fires exactly at the k-th write (save or remove)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_backup.errors import ConfigError, InjectedFault, TransientStorageError
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.faults import FaultInjectingStorage, parse_fault_spec
from airflow_backup.storage.memory import MemoryStorage


def _h(i: int) -> Handle:
    return Handle(FileType.SNAPSHOT, f"{i:064x}")


def test_raise_fails_the_kth_write_without_doing_it() -> None:
    inner = MemoryStorage()
    fs = FaultInjectingStorage(inner, crash_at=3, crash_mode="raise")
    fs.save(_h(1), b"1")
    fs.save(_h(2), b"2")
    with pytest.raises(InjectedFault, match="write 3: save"):
        fs.save(_h(3), b"3")
    assert not inner.exists(_h(3))
    fs.remove(_h(1))  # later writes go through again
    assert not inner.exists(_h(1)) and fs.mutations == 4


def test_kill_completes_the_write_then_kills() -> None:
    inner = MemoryStorage()
    killed: list[int] = []
    journal: list[str] = []
    fs = FaultInjectingStorage(inner, crash_at=2,
                               journal=lambda op, h: journal.append(f"{op} {h}"),
                               on_kill=lambda: killed.append(len(journal)))
    fs.save(_h(1), b"1")
    assert killed == []
    fs.remove(_h(1))
    assert killed == [2] and not inner.exists(_h(1))
    assert journal == [f"save snapshots/{1:064x}", f"remove snapshots/{1:064x}"]


def test_reads_pass_through_and_are_not_counted() -> None:
    inner = MemoryStorage()
    fs = FaultInjectingStorage(inner, crash_at=2, crash_mode="raise")
    fs.save(_h(1), b"abc")
    assert fs.load(_h(1), 1, 1) == b"b" and fs.stat(_h(1)).size == 3
    assert [i.name for i in fs.list(FileType.SNAPSHOT)] == [f"{1:064x}"]
    assert fs.exists(_h(1)) and fs.mutations == 1
    with pytest.raises(InjectedFault):
        fs.remove(_h(1))
    assert inner.exists(_h(1))


def test_a_failing_save_is_still_a_counted_write() -> None:
    # Random faults and the crash hook are independent: a save that the failure rate fails
    # still counts as a write, so crash_at numbers the same writes with or without them.
    fs = FaultInjectingStorage(MemoryStorage(), failure_rate=1.0, crash_at=2,
                               crash_mode="raise")
    with pytest.raises(TransientStorageError, match="injected fault \\(call 1\\)"):
        fs.save(_h(1), b"1")
    with pytest.raises(InjectedFault, match="write 2"):
        fs.save(_h(2), b"2")


def test_spec_arms_the_crash_hook_and_file_journal(tmp_path: Path) -> None:
    inner = MemoryStorage()
    journal = tmp_path / "ops.log"
    fs = FaultInjectingStorage(inner, **parse_fault_spec(
        f"crash_at=2, crash_mode=raise, journal={journal}"))
    fs.save(_h(1), b"1")
    with pytest.raises(InjectedFault):
        fs.save(_h(2), b"2")
    assert journal.read_text() == f"save snapshots/{1:064x}\n"
    with pytest.raises(ConfigError, match="invalid fault option"):
        parse_fault_spec("crash_at=x")
    for bad in ("crash_mode=explode", "crash_at=-1", "journal="):
        with pytest.raises(ConfigError):
            FaultInjectingStorage(inner, **parse_fault_spec(bad))
