"""The archive-ahead spool: receipts honoured only for the exact bytes, and which ready
files are stored ahead."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from airflow_backup.pitr.spool import (
    MAX_RECEIPT_AGE,
    ArchiveSpool,
    PrefetchSpool,
    Receipt,
    file_digest,
    prefetch_directory,
    ready_to_archive,
    spool_directory,
)


def _wal(directory: Path, name: str, data: bytes = b"x" * 100, ready: bool = True) -> Path:
    (directory / "archive_status").mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    if ready:
        (directory / "archive_status" / f"{name}.ready").touch()
    return path


def _receipt_for(path: Path) -> Receipt:
    size, sha = file_digest(path)
    return Receipt(path.name, size, sha, "ab" * 32)


def test_a_receipt_is_taken_once_for_the_same_bytes(tmp_path: Path) -> None:
    seg = _wal(tmp_path / "pg_wal", "000000010000000000000003")
    spool = ArchiveSpool(tmp_path / "spool")
    spool.write(_receipt_for(seg))
    assert spool.take(seg) == _receipt_for(seg)
    assert spool.take(seg) is None  # used up: the next call stores (or finds) it again
    assert os.listdir(tmp_path / "spool") == []


def test_a_receipt_is_refused_and_dropped_when_the_file_changed(tmp_path: Path) -> None:
    seg = _wal(tmp_path / "pg_wal", "000000010000000000000003")
    spool = ArchiveSpool(tmp_path / "spool")
    spool.write(_receipt_for(seg))
    seg.write_bytes(b"y" * 100)  # same size, other content
    assert spool.take(seg) is None
    assert os.listdir(tmp_path / "spool") == []


def test_old_missing_or_unreadable_receipts_are_not_honoured(tmp_path: Path) -> None:
    seg = _wal(tmp_path / "pg_wal", "000000010000000000000003")
    spool = ArchiveSpool(tmp_path / "spool")
    spool.write(_receipt_for(seg))
    receipt = tmp_path / "spool" / f"{seg.name}.receipt"
    old = time.time() - MAX_RECEIPT_AGE - 60
    os.utime(receipt, (old, old))
    assert spool.take(seg) is None
    spool.write(_receipt_for(seg))
    receipt.write_text("{not json")
    assert spool.take(seg) is None
    assert spool.take(tmp_path / "pg_wal" / "not-a-wal-name") is None
    assert ArchiveSpool(tmp_path / "nowhere").take(seg) is None


def test_a_receipt_names_its_file(tmp_path: Path) -> None:
    """A receipt copied under another name (same bytes) does not vouch for that name."""
    a = _wal(tmp_path / "pg_wal", "000000010000000000000003")
    b = _wal(tmp_path / "pg_wal", "000000010000000000000004")
    spool = ArchiveSpool(tmp_path / "spool")
    spool.write(_receipt_for(a))
    os.rename(tmp_path / "spool" / f"{a.name}.receipt", tmp_path / "spool" / f"{b.name}.receipt")
    assert spool.take(b) is None


def test_ready_files_history_first_then_by_name_without_the_asked_one(tmp_path: Path) -> None:
    wal = tmp_path / "pg_wal"
    asked = _wal(wal, "000000010000000000000005")
    for name in ("000000010000000000000007", "000000010000000000000006",
                 "00000002.history", "000000010000000000000004.00000028.backup"):
        _wal(wal, name)
    _wal(wal, "000000010000000000000008", ready=False)  # not ready: still being written
    (wal / "archive_status" / "000000010000000000000009.ready").touch()  # file gone
    (wal / "archive_status" / "junk.ready").touch()
    (wal / "archive_status" / "000000010000000000000003.done").touch()
    names = [p.name for p in ready_to_archive(asked, 10)]
    assert names == ["00000002.history", "000000010000000000000004.00000028.backup",
                     "000000010000000000000006", "000000010000000000000007"]
    assert [p.name for p in ready_to_archive(asked, 2)] == names[:2]
    assert ready_to_archive(asked, 0) == []
    assert ready_to_archive(tmp_path / "elsewhere" / "000000010000000000000001", 4) == []


def test_drop_stale_keeps_only_what_the_server_will_still_ask_for(tmp_path: Path) -> None:
    wal = tmp_path / "pg_wal"
    spool = ArchiveSpool(tmp_path / "spool")
    a = _wal(wal, "000000010000000000000003")
    b = _wal(wal, "000000010000000000000004")
    spool.write(_receipt_for(a))
    spool.write(_receipt_for(b))
    (tmp_path / "spool" / ".tmp-left-by-a-kill").touch()
    spool.drop_stale({b.name})
    assert sorted(os.listdir(tmp_path / "spool")) == [f"{b.name}.receipt"]


def test_the_spool_directory_is_per_repository_location(tmp_path: Path) -> None:
    one = spool_directory(tmp_path, "/srv/backup")
    assert one == spool_directory(tmp_path, "/srv/backup")
    assert one != spool_directory(tmp_path, "s3:s3.amazonaws.com/bucket/backup")
    assert one.parent == tmp_path / "pitr-spool"


def test_a_prefetched_segment_is_handed_over_once(tmp_path: Path) -> None:
    spool = PrefetchSpool(tmp_path / "prefetch")
    spool.path_for("000000010000000000000003").write_bytes(b"segment")
    assert spool.has("000000010000000000000003")
    dest = tmp_path / "RECOVERYXLOG"
    assert spool.take("000000010000000000000003", dest) == len(b"segment")
    assert dest.read_bytes() == b"segment"
    assert spool.take("000000010000000000000003", dest) is None
    assert spool.take("not-a-wal-name", dest) is None


def test_a_prefetched_segment_crosses_file_systems(tmp_path: Path) -> None:
    """The cache and pg_wal may be on different file systems: copied, fsynced, renamed."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to copy across")
    spool = PrefetchSpool(tmp_path / "prefetch")
    spool.path_for("000000010000000000000004").write_bytes(b"x" * 3_000_000)
    with tempfile.TemporaryDirectory(dir=shm) as other:
        dest = Path(other) / "RECOVERYXLOG"
        assert spool.take("000000010000000000000004", dest) == 3_000_000
        assert dest.read_bytes() == b"x" * 3_000_000
        assert os.listdir(other) == ["RECOVERYXLOG"]  # no temp file left
    assert not spool.has("000000010000000000000004")


def test_old_prefetched_segments_are_dropped_not_served(tmp_path: Path) -> None:
    spool = PrefetchSpool(tmp_path / "prefetch")
    path = spool.path_for("000000010000000000000005")
    path.write_bytes(b"old")
    old = time.time() - MAX_RECEIPT_AGE - 60
    os.utime(path, (old, old))
    assert spool.take("000000010000000000000005", tmp_path / "dest") is None
    assert not path.exists()
    spool.path_for("000000010000000000000006").write_bytes(b"a")
    spool.path_for("000000010000000000000007").write_bytes(b"b")
    spool.drop_stale({"000000010000000000000007"})
    assert sorted(os.listdir(tmp_path / "prefetch")) == ["000000010000000000000007"]
    assert prefetch_directory(tmp_path, "/srv/backup").parent == tmp_path / "pitr-prefetch"
