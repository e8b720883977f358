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
    TimelinePath,
    choose_base_backup,
    parse_history,
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


def _backup(sid: str, stop_time: str, stop_lsn: str, timeline: int = 1) -> CatalogEntry:
    return CatalogEntry(sid * 64, stop_time, {"kind": "basebackup", "stop_time": stop_time,
                                              "stop_lsn": stop_lsn, "timeline": timeline,
                                              "stop_timeline": timeline})


def test_timeline_history_files() -> None:
    text = ("1\t0/3000000\tno recovery target specified\n\n"
            "2\t0/9000A28\tbefore 2025-01-02 00:00:00+00\n")
    assert parse_history(text) == {1: 0x3000000, 2: 0x9000A28}
    with pytest.raises(ConfigError):
        parse_history("x\ty\n")
    with pytest.raises(ConfigError):
        RecoveryTarget(timeline="two")
    assert RecoveryTarget(timeline="2").timeline == "2"


def test_backups_from_an_ancestor_timeline_only_before_the_switch() -> None:
    """Timeline 2 branched off timeline 1 at 0/6000000: backup b (timeline 1, ended before
    the switch) reaches it, backup c (timeline 1, ended after) cannot, d is on 2 itself."""
    backups = [_backup("a", "2025-01-01T00:00:00Z", "0/1000000"),
               _backup("b", "2025-01-02T00:00:00Z", "0/5000000"),
               _backup("c", "2025-01-03T00:00:00Z", "0/9000000"),
               _backup("d", "2025-01-05T00:00:00Z", "0/B000000", timeline=2),
               _backup("e", "2025-01-06T00:00:00Z", "0/C000000", timeline=3)]
    two = TimelinePath(2, {1: 0x6000000})
    at = RecoveryTarget("time", "2025-01-04 00:00:00+00")
    assert choose_base_backup(backups, at, path=two).snapshot_id[0] == "b"
    assert choose_base_backup(backups, at).snapshot_id[0] == "c"  # timeline unknown
    assert choose_base_backup(backups, RecoveryTarget(), path=two).snapshot_id[0] == "d"
    one = TimelinePath(1, {})
    assert choose_base_backup(backups, RecoveryTarget(), path=one).snapshot_id[0] == "c"
    with pytest.raises(SnapshotNotFound, match="timeline 4"):
        choose_base_backup(backups[2:3], RecoveryTarget(), path=TimelinePath(4, {1: 0x100}))


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
