"""Snapshot files: the root of one backup, in restic's JSON shape.

Fields restic does not know are kept in ``extra`` and written back unchanged; restic's reader
ignores unknown fields, which is how a snapshot can carry airflow-backup's own metadata.

A snapshot file is validated as restic's Go decoder would before anything uses it (see
:meth:`Snapshot.from_json`): a field of the wrong type, an id that is not 64 hex digits, a uid
outside uint32 or a time that is not RFC 3339 makes the file malformed, an IntegrityError
naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_backup.errors import IntegrityError
from airflow_backup.jsontypes import JSONObject, JSONValue
from airflow_backup.repository.gojson import (
    U32_MAX,
    U64_MAX,
    FieldError,
    as_id,
    as_int,
    as_object,
    as_str,
    as_strings,
    as_time,
    as_value,
    go_text,
)
from airflow_backup.repository.timefmt import parse_ns

__all__ = ["COUNTER_FIELDS", "MAX_EXTRA_DEPTH", "BackupCounters", "Snapshot", "SnapshotSummary"]

COUNTER_FIELDS = (
    "files_new", "files_changed", "files_unmodified", "dirs_new",
    "dirs_changed", "dirs_unmodified", "data_blobs", "tree_blobs", "data_added",
    "data_added_packed", "total_files_processed", "total_bytes_processed",
)
SUMMARY_FIELDS = ("backup_start", "backup_end", *COUNTER_FIELDS)


@dataclass(slots=True)
class BackupCounters:
    """What a backup did, counted; the names are restic's ``summary`` keys."""

    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0
    data_added_packed: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0

    def counters(self) -> dict[str, int]:
        """Return the counters by name."""
        return {name: getattr(self, name) for name in COUNTER_FIELDS}


@dataclass(slots=True)
class SnapshotSummary(BackupCounters):
    """A snapshot's ``summary``: the counters plus when the backup started and ended."""

    backup_start: str = ""
    backup_end: str = ""

    def to_json(self) -> JSONObject:
        """Return the summary as restic writes it."""
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}

    @classmethod
    def from_json(cls, obj: JSONValue, field: str = "summary") -> SnapshotSummary:
        """Parse a summary, ignoring keys this version does not know and null values (as Go
        does). Raise FieldError if it is not an object, a counter is not an integer in
        uint64 range, or a time is neither empty nor RFC 3339."""
        out = cls()
        for k, v in as_object(obj, field).items():
            if v is None:
                continue
            if k in _SUMMARY_TIMES:
                if v != "":  # our own writers leave an unset time empty
                    as_time(v, f"{field}.{k}")
            elif k not in _SUMMARY_COUNTERS:
                continue
            else:
                as_int(v, f"{field}.{k}", 0, U64_MAX)
            setattr(out, k, v)
        return out


_SUMMARY_TIMES = frozenset({"backup_start", "backup_end"})
_SUMMARY_COUNTERS = frozenset(COUNTER_FIELDS)


@dataclass(slots=True)
class Snapshot:
    """A snapshot. ``id`` is its storage id (empty until saved or loaded)."""

    time: str
    tree: bytes
    paths: list[str]
    hostname: str = ""
    username: str = ""
    uid: int = 0
    gid: int = 0
    excludes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    parent: bytes | None = None
    original: bytes | None = None
    program_version: str = ""
    summary: SnapshotSummary | None = None
    extra: JSONObject = field(default_factory=dict)
    id: str = ""
    #: Why the file is unusable, for a stand-in made by :meth:`damaged_file`; empty for a
    #: snapshot that was read.
    damaged: str = ""
    # ``time`` as parsed last (the text, then epoch ns and offset): listing, sorting and
    # retention ask for it several times per snapshot, 70,000 parses for 10,000 snapshots.
    _parsed_time: tuple[str, int, int] | None = field(default=None, repr=False,
                                                       compare=False)

    @classmethod
    def damaged_file(cls, snapshot_id: str, reason: str) -> Snapshot:
        """Return a stand-in for the snapshot file ``snapshot_id`` that cannot be read
        (``reason`` says why): it has the id and nothing else, so that the file can be named
        and removed (``forget ID``). Its time and tree are unknown: it is never listed."""
        return cls(time="", tree=b"", paths=[], id=snapshot_id, damaged=reason)

    @property
    def time_ns(self) -> int:
        """Return the snapshot time as epoch nanoseconds (for ordering and selection). Raise
        IntegrityError for a :meth:`damaged_file` stand-in, whose time is unknown."""
        return self.time_and_offset[0]

    @property
    def time_and_offset(self) -> tuple[int, int]:
        """Return (epoch nanoseconds, UTC offset in seconds) of the snapshot time. Raise
        IntegrityError for a :meth:`damaged_file` stand-in, whose time is unknown."""
        if self.damaged:
            raise IntegrityError(self.damaged)
        parsed = self._parsed_time
        if parsed is None or parsed[0] is not self.time:
            ns, offset = parse_ns(self.time)
            parsed = self._parsed_time = (self.time, ns, offset)
        return parsed[1], parsed[2]

    @property
    def short_id(self) -> str:
        """Return the first 8 hex digits of the id, as restic shows it."""
        return self.id[:8]

    def to_json(self) -> JSONObject:
        """Return the snapshot file's JSON object (without ``id``), fields in Go order."""
        out: JSONObject = {"time": self.time}
        if self.parent is not None:
            out["parent"] = self.parent.hex()
        out["tree"] = self.tree.hex()
        out["paths"] = list(self.paths)
        out["hostname"] = self.hostname
        out["username"] = self.username
        out["uid"] = self.uid
        out["gid"] = self.gid
        if self.excludes:
            out["excludes"] = list(self.excludes)
        if self.tags:
            out["tags"] = list(self.tags)
        if self.original is not None:
            out["original"] = self.original.hex()
        if self.program_version:
            out["program_version"] = self.program_version
        if self.summary is not None:
            out["summary"] = self.summary.to_json()
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: JSONValue, snapshot_id: str = "", what: str = "") -> Snapshot:
        """Given a snapshot file's parsed JSON, return the snapshot after validating it as
        restic's decoder would: ``time`` an RFC 3339 string, ``tree`` (and ``parent``,
        ``original`` when given) 64 hex digits, lists of strings, strings, ``uid``/``gid`` in
        uint32, the summary's counters in uint64; null stands for the zero value, as in Go.
        Unknown fields are kept in ``extra`` (nested at most :data:`MAX_EXTRA_DEPTH` deep).

        Raise IntegrityError naming ``what`` (default ``snapshots/<id>``) and the field if
        the snapshot is malformed.
        """
        try:
            return cls._decode(obj, snapshot_id)
        except FieldError as exc:
            name = what or (f"snapshots/{snapshot_id}" if snapshot_id else "snapshot")
            raise IntegrityError(f"{name}: malformed snapshot: {exc}") from exc

    @classmethod
    def _decode(cls, value: JSONValue, snapshot_id: str) -> Snapshot:
        obj = as_object(value, "")
        get = obj.get
        if get("time") is None:
            raise FieldError("time", "missing")
        if get("tree") is None:
            raise FieldError("tree", "missing")
        summary = get("summary")
        extra = {go_text(k): as_value(v, k, MAX_EXTRA_DEPTH)
                 for k, v in obj.items() if k not in _KNOWN}
        return cls(
            time=as_time(get("time"), "time"),
            tree=as_id(get("tree"), "tree"),
            paths=as_strings(get("paths"), "paths"),
            hostname=as_str(get("hostname"), "hostname"),
            username=as_str(get("username"), "username"),
            uid=as_int(get("uid"), "uid", 0, U32_MAX),
            gid=as_int(get("gid"), "gid", 0, U32_MAX),
            excludes=as_strings(get("excludes"), "excludes"),
            tags=as_strings(get("tags"), "tags"),
            parent=_optional_id(get("parent"), "parent"),
            original=_optional_id(get("original"), "original"),
            program_version=as_str(get("program_version"), "program_version"),
            summary=None if summary is None else SnapshotSummary.from_json(summary),
            extra=extra,
            id=snapshot_id,
        )


_KNOWN = frozenset({"time", "parent", "tree", "paths", "hostname", "username", "uid", "gid",
                    "excludes", "tags", "original", "program_version", "summary"})

#: How deeply a field restic does not know may nest (our own metadata nests a few levels);
#: deeper values could not be written back or printed.
MAX_EXTRA_DEPTH = 64

def _optional_id(value: Any, field: str) -> bytes | None:
    return None if value is None else as_id(value, field)
