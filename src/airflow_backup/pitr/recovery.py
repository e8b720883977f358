"""Restore a base backup and set PostgreSQL up to recover to a target.

:func:`choose_base_backup` picks the newest base backup that ended before the target (a
backup that ended after it cannot reach it: replay only goes forward). For a time target the
recorded stop time decides, for an LSN target the stop LSN; an xid, a restore-point name, the
end of the backup (``immediate``) or the end of the archive (``latest``) take the newest
backup unless one is named. Timelines count too: recovery follows the target timeline
(``recovery_target_timeline``; ``latest`` is the highest timeline with an archived
``.history`` file), and a backup fits only if it is on that timeline, or on one of its
ancestors and ended no later than the point where the history file says that ancestor was
left (a backup taken on timeline 1 after the switch to timeline 2 cannot reach timeline 2:
PostgreSQL would refuse it with "requested timeline is not a child of this server's
history"). :func:`restore_base_backup` extracts it into an empty directory,
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
    WalMissing,
)
from airflow_backup.pitr.basebackup import BASE_FILE
from airflow_backup.pitr.catalog import CatalogEntry, PitrCatalog
from airflow_backup.pitr.names import format_lsn, parse_lsn
from airflow_backup.pitr.wal import read_wal
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.restorer.dump import dump_file

__all__ = ["ACTIONS", "TARGET_KINDS", "RecoveryTarget", "RestoredBase", "TimelinePath",
           "choose_base_backup", "parse_history", "parse_target_time", "recovery_settings",
           "restore_base_backup", "target_timeline"]

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
        if self.timeline not in ("latest", "current"):
            _timeline_number(self.timeline)


def _timeline_number(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = 0
    if value < 1 or value > 0xFFFFFFFF:
        raise ConfigError(f"--target-timeline must be latest, current or a timeline id, "
                          f"not {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class TimelinePath:
    """The timeline recovery follows (``timeline``) and where it left each ancestor:
    ``switches[t]`` is the LSN at which timeline ``t`` ended (from ``TTTTTTTT.history``)."""

    timeline: int
    switches: dict[int, int]

    def allows(self, entry: CatalogEntry) -> bool:
        """Return whether the base backup ``entry`` can recover onto this timeline."""
        tli = _int(entry.meta.get("stop_timeline", entry.meta.get("timeline", 1)))
        if tli == self.timeline:
            return True
        switch = self.switches.get(tli)
        return switch is not None and _stop_lsn(entry) <= switch


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def parse_history(text: str) -> dict[int, int]:
    """Return ``{parent timeline: switch LSN}`` from a ``TTTTTTTT.history`` file (lines
    ``parentTLI<TAB>switchpoint<TAB>reason``; comments and blank lines skipped). Raise
    ConfigError for a line that cannot be read."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise ConfigError(f"unreadable timeline history line {line!r}")
        out[int(fields[0])] = parse_lsn(fields[1])
    return out


def target_timeline(repo: Repository, catalog: PitrCatalog, target: RecoveryTarget
                    ) -> TimelinePath | None:
    """Return the timeline ``target`` recovers onto and its switch points, or None when any
    base backup's own timeline will do (``current``, or ``latest`` with no history file
    archived). Raise SnapshotNotFound if a timeline above 1 has no archived history file."""
    if target.timeline == "current":
        return None
    if target.timeline == "latest":
        histories = [_int(e.meta.get("timeline")) for e in catalog.entries("wal")
                     if e.meta.get("type") == "history"]
        if not histories:
            return None
        tli = max(histories)
    else:
        tli = _timeline_number(target.timeline)
    if tli == 1:
        return TimelinePath(1, {})
    name = f"{tli:08X}.history"
    try:
        text = read_wal(repo, catalog, name).decode("utf-8", "replace")
    except WalMissing:
        raise SnapshotNotFound(f"timeline {tli}: {name} is not in the WAL archive") from None
    return TimelinePath(tli, parse_history(text))


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


def _stop_lsn(entry: CatalogEntry) -> int:
    return parse_lsn(str(entry.meta.get("stop_lsn", "0/0")))


def choose_base_backup(backups: list[CatalogEntry], target: RecoveryTarget,
                       backup_id: str = "", path: TimelinePath | None = None
                       ) -> CatalogEntry:
    """Return the base backup to restore for ``target`` (see the module docstring), or the
    one whose snapshot id starts with ``backup_id``; with ``path``, only one that can reach
    that timeline. Raise SnapshotNotFound if none fits."""
    if not backups:
        raise SnapshotNotFound("no base backup in the repository (run 'pg basebackup')")
    if backup_id:
        found = [b for b in backups if b.snapshot_id.startswith(backup_id)]
        if len(found) != 1:
            raise SnapshotNotFound(f"no single base backup matches {backup_id!r}")
        return found[0]
    fits = backups
    if path is not None:
        fits = [b for b in backups if path.allows(b)]
        if not fits:
            raise SnapshotNotFound(
                f"no base backup can reach timeline {path.timeline}: none was taken on it, "
                "nor on an ancestor before the switch ("
                + ", ".join(f"timeline {t} left at {format_lsn(lsn)}"
                            for t, lsn in sorted(path.switches.items())) + ")")
    if target.kind == "time":
        limit = int(parse_target_time(target.value).timestamp() * 1e9)
        fits = [b for b in fits if _stop_ns(b) <= limit]
    elif target.kind == "lsn":
        lsn = parse_lsn(target.value)
        fits = [b for b in fits if _stop_lsn(b) <= lsn]
    if not fits:
        on = f" on timeline {path.timeline}" if path is not None else ""
        raise SnapshotNotFound(f"no base backup{on} ended before the {target.kind} target "
                               f"{target.value!r}; the oldest ended at "
                               f"{backups[0].meta.get('stop_time')} "
                               f"(LSN {backups[0].meta.get('stop_lsn')})")
    return max(fits, key=lambda b: (_stop_ns(b), _stop_lsn(b)))


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
    path = None if backup_id else target_timeline(repo, catalog, target)
    entry = choose_base_backup(catalog.entries("basebackup"), target, backup_id, path)
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
