"""Restore a base backup and set PostgreSQL up to recover to a target.

:func:`choose_base_backup` picks the newest base backup that ended before the target (a
backup that ended after it cannot reach it: replay only goes forward). For a time target the
recorded stop time decides, for an LSN target the stop LSN; an xid, a restore-point name, the
end of the backup (``immediate``) or the end of the archive (``latest``) take the newest
backup unless one is named. :func:`restore_base_backup` extracts it into an empty directory,
then writes ``recovery.signal`` and appends the recovery settings to
``postgresql.auto.conf``; the server does the rest when started.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from airflow_backup.errors import (
    ConfigError,
    RestoreTargetExists,
    SnapshotNotFound,
    UnsafePath,
)
from airflow_backup.pitr.basebackup import BASE_FILE
from airflow_backup.pitr.catalog import CatalogEntry, PitrCatalog
from airflow_backup.pitr.names import parse_lsn
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.restorer.dump import dump_file

__all__ = ["ACTIONS", "TARGET_KINDS", "RecoveryTarget", "RestoredBase", "choose_base_backup",
           "parse_target_time", "recovery_settings", "restore_base_backup"]

TARGET_KINDS = ("time", "lsn", "xid", "name", "immediate", "latest")
ACTIONS = ("pause", "promote", "shutdown")


@dataclass(frozen=True, slots=True)
class RecoveryTarget:
    """Where recovery stops: ``kind`` one of :data:`TARGET_KINDS` (``latest``: replay all
    archived WAL), ``value`` the time/LSN/xid/name, ``action`` what the server does there,
    ``timeline`` the ``recovery_target_timeline``, ``inclusive`` whether it stops just
    after (default) or just before the target."""

    kind: str = "latest"
    value: str = ""
    action: str = "pause"
    timeline: str = "latest"
    inclusive: bool = True

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ConfigError(f"unknown recovery target {self.kind!r}")
        if self.action not in ACTIONS:
            raise ConfigError(f"--target-action must be one of {', '.join(ACTIONS)}")
        if self.kind in ("time", "lsn", "xid", "name") and not self.value:
            raise ConfigError(f"a {self.kind} target needs a value")
        if self.kind == "lsn":
            parse_lsn(self.value)
        if self.kind == "time":
            parse_target_time(self.value)
        if self.kind == "xid" and not self.value.isdigit():
            raise ConfigError(f"--target-xid must be a transaction id, not {self.value!r}")


def parse_target_time(text: str) -> datetime:
    """Return the target time as an aware datetime (ISO 8601 / PostgreSQL's output, e.g.
    ``2025-01-31 12:00:00.123+00``; a time without offset is this host's local time).
    Raise ConfigError if it cannot be read."""
    value = text.strip()
    if len(value) > 3 and value[-3] in "+-" and value[-2:].isdigit() and ":" in value[-9:-3]:
        value += ":00"  # PostgreSQL prints "+00"; Python wants "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--target-time {text!r} is not a time like "
                          "'2025-01-31 12:00:00+00'") from None
    return when if when.tzinfo is not None else when.astimezone()


def _stop_ns(entry: CatalogEntry) -> int:
    return parse_ns(str(entry.meta.get("stop_time", "")))[0]


def choose_base_backup(backups: list[CatalogEntry], target: RecoveryTarget,
                       backup_id: str = "") -> CatalogEntry:
    """Return the base backup to restore for ``target`` (see the module docstring), or the
    one whose snapshot id starts with ``backup_id``. Raise SnapshotNotFound if none fits."""
    if not backups:
        raise SnapshotNotFound("no base backup in the repository (run 'pg basebackup')")
    if backup_id:
        found = [b for b in backups if b.snapshot_id.startswith(backup_id)]
        if len(found) != 1:
            raise SnapshotNotFound(f"no single base backup matches {backup_id!r}")
        return found[0]
    fits = backups
    if target.kind == "time":
        limit = int(parse_target_time(target.value).timestamp() * 1e9)
        fits = [b for b in backups if _stop_ns(b) <= limit]
    elif target.kind == "lsn":
        lsn = parse_lsn(target.value)
        fits = [b for b in backups if parse_lsn(str(b.meta.get("stop_lsn", "0/0"))) <= lsn]
    if not fits:
        raise SnapshotNotFound(f"no base backup ended before the {target.kind} target "
                               f"{target.value!r}; the oldest ended at "
                               f"{backups[0].meta.get('stop_time')} "
                               f"(LSN {backups[0].meta.get('stop_lsn')})")
    return max(fits, key=lambda b: (_stop_ns(b), parse_lsn(str(b.meta.get("stop_lsn", "0/0")))))


def _quote(value: str) -> str:
    """Return ``value`` as a postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def recovery_settings(target: RecoveryTarget, restore_command: str) -> list[str]:
    """Return the ``postgresql.auto.conf`` lines that make the server recover to
    ``target`` with WAL from ``restore_command``."""
    lines = [f"restore_command = {_quote(restore_command)}",
             f"recovery_target_timeline = {_quote(target.timeline)}"]
    if target.kind == "immediate":
        lines.append("recovery_target = 'immediate'")
    elif target.kind != "latest":
        lines.append(f"recovery_target_{target.kind} = {_quote(target.value)}")
        lines.append(f"recovery_target_inclusive = {'on' if target.inclusive else 'off'}")
    if target.kind != "latest":
        lines.append(f"recovery_target_action = {_quote(target.action)}")
    return lines


@dataclass(frozen=True, slots=True)
class RestoredBase:
    """What :func:`restore_base_backup` did."""

    backup: CatalogEntry
    target_dir: Path
    size: int
    settings: tuple[str, ...]


#: tarfile's own safety filter where this Python has it (3.11.4+); :func:`_checked` refuses
#: unsafe members either way.
_TAR_FILTER: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}


def _checked(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Yield the members of ``tar`` as they stream by; raise UnsafePath for a name or link
    that would leave the target directory, or a device file."""
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise UnsafePath(f"base backup member {member.name!r} escapes the target")
        if member.islnk() or member.issym():
            link = PurePosixPath(member.linkname)
            if link.is_absolute() or ".." in link.parts:
                raise UnsafePath(f"base backup link {member.name!r} -> {member.linkname!r} "
                                 "escapes the target")
        elif not (member.isfile() or member.isdir()):
            raise UnsafePath(f"base backup member {member.name!r} is not a file or directory")
        yield member


def _extract(repo: Repository, entry: CatalogEntry, target_dir: Path) -> int:
    """Stream ``base.tar`` of the snapshot through a pipe into tarfile; return its size."""
    sn = repo.load_snapshot(entry.snapshot_id)
    rfd, wfd = os.pipe()
    written: list[int] = []
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(wfd, "wb") as w:
                written.append(dump_file(repo, sn, BASE_FILE, cast(BinaryIO, w)))
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=produce, name="pitr-extract", daemon=True)
    thread.start()
    with os.fdopen(rfd, "rb") as r:
        try:
            with tarfile.open(fileobj=r, mode="r|") as tar:
                tar.extractall(target_dir, members=_checked(tar), **_TAR_FILTER)
            with contextlib.suppress(OSError):
                while r.read(1 << 20):  # the end-of-archive padding
                    pass
        finally:
            r.close()  # a producer still writing gets EPIPE instead of blocking
            thread.join()
    if failed and not isinstance(failed[0], BrokenPipeError):
        raise failed[0]
    return written[0] if written else 0


def restore_base_backup(repo: Repository, catalog: PitrCatalog, target: RecoveryTarget,
                        target_dir: str | os.PathLike[str], restore_command: str, *,
                        backup_id: str = "") -> RestoredBase:
    """Restore the base backup chosen for ``target`` into the empty or new directory
    ``target_dir`` and configure recovery (see the module docstring); return what was done.

    Raise RestoreTargetExists if the directory is not empty, SnapshotNotFound if no base
    backup fits, or a repository/storage error.
    """
    catalog.refresh()
    entry = choose_base_backup(catalog.entries("basebackup"), target, backup_id)
    out = Path(target_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RestoreTargetExists(f"{out}: not an empty directory")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.chmod(0o700)  # PostgreSQL refuses a data directory others can read
    size = _extract(repo, entry, out)
    for name in ("pg_wal", "pg_wal/archive_status"):
        (out / name).mkdir(mode=0o700, exist_ok=True)
    settings = recovery_settings(target, restore_command)
    auto = out / "postgresql.auto.conf"
    with open(auto, "a", encoding="utf-8") as f:
        f.write("\n# added by airflow-backup pg restore: recovery from snapshot "
                f"{entry.snapshot_id[:8]}\n" + "".join(line + "\n" for line in settings))
        f.flush()
        os.fsync(f.fileno())
    signal = out / "recovery.signal"
    signal.touch()
    return RestoredBase(entry, out, size, tuple(settings))
