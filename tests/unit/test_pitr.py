"""The pure parts of PostgreSQL PITR: WAL names, LSNs, the tar tap, choosing a base backup
for a target and the recovery settings written for it."""

from __future__ import annotations

import io
import tarfile

import pytest

from airflow_backup.errors import ConfigError, SnapshotNotFound
from airflow_backup.pitr.basebackup import TarTap, parse_backup_label
from airflow_backup.pitr.catalog import CatalogEntry
from airflow_backup.pitr.names import format_lsn, parse_lsn, parse_wal_name
from airflow_backup.pitr.recovery import (
    RecoveryTarget,
    choose_base_backup,
    parse_target_time,
    recovery_settings,
)


def test_wal_names() -> None:
    assert parse_wal_name("00000002000000000000000A").kind == "segment"
    assert parse_wal_name("00000002000000000000000A").timeline == 2
    assert parse_wal_name("0000000A.history").timeline == 10
    assert parse_wal_name("000000010000000000000003.partial").kind == "partial"
    assert parse_wal_name("000000010000000000000002.00000028.backup").kind == "backup"
    for bad in ("RECOVERYXLOG", "00000001", "0000000100000000000000zz", "../x.history"):
        with pytest.raises(ConfigError):
            parse_wal_name(bad)


def test_lsn_round_trip() -> None:
    assert parse_lsn("0/16B3740") == 0x16B3740
    assert parse_lsn("1/0") == 1 << 32
    assert format_lsn(parse_lsn("A/FF00")) == "A/FF00"
    with pytest.raises(ConfigError):
        parse_lsn("16B3740")


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("step", [1, 7, 512, 4096, 1 << 20])
def test_tar_tap_keeps_label_and_manifest_whatever_the_read_sizes(step: int) -> None:
    label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
    raw = _tar({"base/1/1259": b"x" * 9000, "backup_label": label, "global/pg_control":
                b"\0" * 8192, "backup_manifest": b'{"WAL-Ranges": []}', "empty": b""})
    tap = TarTap(io.BytesIO(raw))
    out = bytearray()
    while chunk := tap.read(step):
        out += chunk
    assert bytes(out) == raw
    assert tap.files == {"backup_label": label, "backup_manifest": b'{"WAL-Ranges": []}'}
    assert parse_backup_label(label.decode())["START WAL LOCATION"].startswith("0/2000028")


def _backup(sid: str, stop_time: str, stop_lsn: str) -> CatalogEntry:
    return CatalogEntry(sid * 64, stop_time, {"kind": "basebackup", "stop_time": stop_time,
                                              "stop_lsn": stop_lsn})


def test_choose_the_newest_backup_that_ended_before_the_target() -> None:
    backups = [_backup("a", "2025-01-01T00:00:00Z", "0/1000000"),
               _backup("b", "2025-01-02T00:00:00Z", "0/5000000"),
               _backup("c", "2025-01-03T00:00:00Z", "0/9000000")]
    at = RecoveryTarget("time", "2025-01-02 12:00:00+00")
    assert choose_base_backup(backups, at).snapshot_id[0] == "b"
    assert choose_base_backup(backups, RecoveryTarget("lsn", "0/5000000")).snapshot_id[0] == "b"
    assert choose_base_backup(backups, RecoveryTarget("lsn", "0/4FFFFFF")).snapshot_id[0] == "a"
    assert choose_base_backup(backups, RecoveryTarget("xid", "1234")).snapshot_id[0] == "c"
    assert choose_base_backup(backups, RecoveryTarget(), "b").snapshot_id[0] == "b"
    with pytest.raises(SnapshotNotFound, match="ended before"):
        choose_base_backup(backups, RecoveryTarget("time", "2024-12-31 00:00:00+00"))
    with pytest.raises(SnapshotNotFound):
        choose_base_backup([], RecoveryTarget())


def test_target_times_as_postgresql_prints_them() -> None:
    assert parse_target_time("2025-01-31 12:00:00.5+00").utcoffset() is not None
    assert parse_target_time("2025-01-31 12:00:00+05:30").utcoffset() is not None
    assert parse_target_time("2025-01-31 12:00").tzinfo is not None
    with pytest.raises(ConfigError):
        RecoveryTarget("time", "yesterday")
    with pytest.raises(ConfigError):
        RecoveryTarget("xid", "12a")
    with pytest.raises(ConfigError):
        RecoveryTarget("name", "")


def test_recovery_settings_quote_values() -> None:
    lines = recovery_settings(RecoveryTarget("name", "it's", action="promote"),
                              "ab -r '/srv/b' pg restore-wal %f %p")
    assert lines == ["restore_command = 'ab -r ''/srv/b'' pg restore-wal %f %p'",
                     "recovery_target_timeline = 'latest'",
                     "recovery_target_name = 'it''s'", "recovery_target_inclusive = on",
                     "recovery_target_action = 'promote'"]
    assert "recovery_target = 'immediate'" in recovery_settings(
        RecoveryTarget("immediate"), "x")
    assert not any("recovery_target_action" in ln
                   for ln in recovery_settings(RecoveryTarget(), "x"))
