"""Catalogue entries built directly, for the gap check and retention tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_backup.jsontypes import JSONObject
from airflow_backup.pitr.catalog import CatalogEntry
from airflow_backup.pitr.gaps import segment_name
from airflow_backup.pitr.names import format_lsn
from airflow_backup.repository.timefmt import format_time

SIZE = 16 << 20
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    """Return the RFC 3339 time ``seconds`` after T0."""
    return format_time(T0 + timedelta(seconds=seconds))


def seg(tli: int, segno: int, size: int = SIZE, kind: str = "segment") -> CatalogEntry:
    """A WAL segment (or ``.partial``) archived 10 s per segment number after T0."""
    name = segment_name(tli, segno, size) + (".partial" if kind == "partial" else "")
    return CatalogEntry(f"w{tli:02d}{segno:06d}{kind[0]}", at(10 * segno + tli),
                        {"kind": "wal", "name": name, "type": kind, "timeline": tli})


def backup_file(tli: int, segno: int) -> CatalogEntry:
    """A ``.backup`` history file of a base backup starting in ``segno``."""
    name = f"{segment_name(tli, segno, SIZE)}.00000028.backup"
    return CatalogEntry(f"b{tli:02d}{segno:06d}", at(10 * segno + 5),
                        {"kind": "wal", "name": name, "type": "backup", "timeline": tli})


def history(tli: int) -> CatalogEntry:
    """A ``TTTTTTTT.history`` file."""
    return CatalogEntry(f"h{tli:02d}", at(tli), {"kind": "wal", "name": f"{tli:08X}.history",
                                                 "type": "history", "timeline": tli})


def base(sid: str, start: int, stop: int, tli: int = 1, size: int = SIZE,
         record_size: bool = False, stop_timeline: int | None = None) -> CatalogEntry:
    """A base backup whose WAL runs from segment ``start`` to segment ``stop``; it ends 10 s
    per segment after T0 (like the segments' archive times)."""
    meta: JSONObject = {"kind": "basebackup", "start_lsn": format_lsn(start * size + 0x28),
                        "stop_lsn": format_lsn(stop * size + 0x138),
                        "start_wal": segment_name(tli, start, size), "timeline": tli,
                        "stop_timeline": stop_timeline or tli,
                        "start_time": at(10 * start), "stop_time": at(10 * stop + 1)}
    if record_size:
        meta["wal_segment_size"] = size
    return CatalogEntry(sid, at(10 * start), meta)


def segments(tli: int, first: int, last: int, size: int = SIZE) -> list[CatalogEntry]:
    """Segments ``first``..``last`` (inclusive) of ``tli``."""
    return [seg(tli, n, size) for n in range(first, last + 1)]
