"""Base backups: ``pg_basebackup -D - -Ft -X none`` streamed into one snapshot.

The tar stream passes through :class:`TarTap`, which keeps the two small files the catalogue
needs while the data goes on into the repository: ``backup_label`` (start LSN, checkpoint,
start time, timeline) and ``backup_manifest`` (PostgreSQL 13+, which ``pg_basebackup``
injects into a tar written to stdout; its ``WAL-Ranges`` give the stop LSN). The stop time is
this host's clock when ``pg_basebackup`` has exited, which is never earlier than the server's
stop; choosing a backup for a time target by it is therefore safe when clocks agree.
``-X none`` keeps WAL out of the backup: the server waits until the last segment the backup
needs is archived (by ``pg archive-wal``) before ``pg_basebackup`` exits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO, cast

from airflow_backup.archiver.archive import Archiver
from airflow_backup.archiver.options import BackupOptions
from airflow_backup.errors import DumpFailed, ValidationFailed
from airflow_backup.jsontypes import JSONObject
from airflow_backup.pitr.catalog import BASE_TAG
from airflow_backup.pitr.names import format_lsn, parse_lsn
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_time
from airflow_backup.sources.base import SourceURL
from airflow_backup.sources.postgres import PostgresSource
from airflow_backup.sources.process import Child, find_tool

__all__ = ["BASE_FILE", "BaseBackup", "TarTap", "parse_backup_label", "take_base_backup"]

BASE_FILE = "base.tar"
_KEEP = {"backup_label": 1 << 20, "backup_manifest": 256 << 20}
_LABEL_LINE = re.compile(r"^([A-Z ]+): (.*)$")


class TarTap:
    """A readable stream over a tar stream that captures the members named in ``_KEEP``
    (top-level regular files, up to their size limit) as the data passes."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.files: dict[str, bytes] = {}
        self._header = bytearray()
        self._left = 0          # data bytes of the current member still to come
        self._pad = 0           # padding bytes after it
        self._capture: bytearray | None = None
        self._name = ""
        self._ended = False

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data:
            self._feed(memoryview(data))
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        n = self._inner.readinto(buf)  # type: ignore[attr-defined]
        if n:
            self._feed(memoryview(buf)[:n])
        return int(n or 0)

    def _feed(self, view: memoryview) -> None:
        while view and not self._ended:
            if self._left:
                take = min(self._left, len(view))
                if self._capture is not None:
                    self._capture += view[:take]
                self._left -= take
                view = view[take:]
                if not self._left:
                    self._member_done()
            elif self._pad:
                take = min(self._pad, len(view))
                self._pad -= take
                view = view[take:]
            else:
                take = min(512 - len(self._header), len(view))
                self._header += view[:take]
                view = view[take:]
                if len(self._header) == 512:
                    self._start_member(bytes(self._header))
                    self._header.clear()

    def _start_member(self, header: bytes) -> None:
        if header == bytes(512):
            self._ended = True  # end-of-archive blocks
            return
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            name = f"{prefix}/{name}"
        raw = header[124:136]
        if raw[0] & 0x80:  # base-256 size (GNU)
            size = int.from_bytes(raw[1:], "big")
        else:
            size = int(raw.split(b"\0", 1)[0].strip() or b"0", 8)
        kind = header[156:157]
        self._left, self._pad = size, (-size) % 512
        self._name = name
        keep = _KEEP.get(name.removeprefix("./"))
        self._capture = bytearray() if kind in (b"0", b"\0") and keep and size <= keep else None
        if not size:
            self._member_done()

    def _member_done(self) -> None:
        if self._capture is not None:
            self.files[self._name.removeprefix("./")] = bytes(self._capture)
        self._capture = None


def parse_backup_label(text: str) -> dict[str, str]:
    """Return the ``KEY: value`` lines of a ``backup_label`` file."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LABEL_LINE.match(line.strip())
        if m:
            out[m[1]] = m[2]
    return out


@dataclass(slots=True)
class BaseBackup:
    """A base backup stored: its snapshot and the metadata recorded in it."""

    snapshot: Snapshot
    meta: JSONObject = field(default_factory=dict)
    size: int = 0


def _facts(files: dict[str, bytes], started: datetime, ended: datetime, label: str,
           url: str) -> JSONObject:
    if "backup_label" not in files:
        raise ValidationFailed("pg_basebackup output has no backup_label")
    if "backup_manifest" not in files:
        raise ValidationFailed("pg_basebackup output has no backup_manifest (PostgreSQL 13 "
                               "or later is needed, without --no-manifest)")
    lab = parse_backup_label(files["backup_label"].decode("utf-8", "replace"))
    try:
        manifest = json.loads(files["backup_manifest"])
        ranges = manifest["WAL-Ranges"]
        stop_lsn = max(parse_lsn(str(r["End-LSN"])) for r in ranges)
        stop_tli = int(ranges[-1]["Timeline"])
        start_lsn = parse_lsn(lab["START WAL LOCATION"].split()[0])
        checkpoint = parse_lsn(lab["CHECKPOINT LOCATION"])
        start_wal = lab["START WAL LOCATION"].split("file ")[-1].rstrip(")")
        timeline = int(lab["START TIMELINE"])
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ValidationFailed(f"cannot read backup_label/backup_manifest: {exc}") from None
    return {"kind": "basebackup", "start_lsn": format_lsn(start_lsn),
            "stop_lsn": format_lsn(stop_lsn), "checkpoint_lsn": format_lsn(checkpoint),
            "start_wal": start_wal, "timeline": timeline, "stop_timeline": stop_tli,
            "start_time": format_time(started), "stop_time": format_time(ended),
            "server_start_time": lab.get("START TIME", ""), "label": label,
            "backup_from": lab.get("BACKUP FROM", ""), "source": url, "file": BASE_FILE}


def take_base_backup(repo: Repository, url: str, *, label: str = "airflow-backup",
                     tags: list[str] | None = None, hostname: str | None = None,
                     fast_checkpoint: bool = True) -> BaseBackup:
    """Run ``pg_basebackup`` against the server of ``url`` (``postgresql://user@host:port``;
    the password from AIRFLOW_BACKUP_SOURCE_PASSWORD(_FILE) or PGPASSWORD, never argv) and
    store its tar stream as one snapshot; return it. No snapshot is written unless
    ``pg_basebackup`` succeeded and its label and manifest were read.

    Raise ToolMissing, DumpFailed (or SourceUnavailable/SourceAuthFailed), ValidationFailed.
    """
    source = PostgresSource(SourceURL.parse(url, allow_password=True))
    env: dict[str, str | None] = dict(source.env())
    env["PGAPPNAME"] = "airflow-backup"
    argv = [find_tool("pg_basebackup"), "-D", "-", "-Ft", "-X", "none", "--label", label,
            "--checkpoint=fast" if fast_checkpoint else "--checkpoint=spread", "--no-password"]
    started = datetime.now(UTC).astimezone()
    child = Child(argv, "pg_basebackup", env=env)
    tap = TarTap(child.stdout)
    meta: JSONObject = {}
    options = BackupOptions(tags=[BASE_TAG, *(tags or [])], hostname=hostname,
                            metadata={"pitr": meta})

    def finished() -> None:
        child.check(DumpFailed)
        ended = datetime.now(UTC).astimezone()
        meta.update(_facts(tap.files, started, ended, label, source.url.redacted()))

    try:
        result = Archiver(repo).backup_stream(cast(BinaryIO, tap), BASE_FILE, options,
                                              before_snapshot=finished)
    finally:
        child.kill()
    return BaseBackup(result.snapshot, meta, result.stats.total_bytes_processed)
