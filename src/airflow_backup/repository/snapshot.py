"""Snapshot files: the root of one backup, in restic's JSON shape.

Fields restic does not know are kept in ``extra`` and written back unchanged; restic's reader
ignores unknown fields, which is how a snapshot can carry airflow-backup's own metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_backup.jsontypes import JSONObject, JSONValue
from airflow_backup.repository.timefmt import parse_ns

__all__ = ["COUNTER_FIELDS", "BackupCounters", "Snapshot", "SnapshotSummary"]

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
    def from_json(cls, obj: JSONObject) -> SnapshotSummary:
        """Parse a summary, ignoring keys this version does not know and null values (as Go
        does). Raise TypeError if a counter is not an integer or a time not a string."""
        out = cls()
        for k, v in obj.items():
            if v is None:
                continue
            if k in _SUMMARY_TIMES:
                if not isinstance(v, str):
                    raise TypeError(f"summary {k} is not a string")
            elif k not in _SUMMARY_COUNTERS:
                continue
            elif not isinstance(v, int):
                raise TypeError(f"summary {k} is not an integer")
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

    @property
    def time_ns(self) -> int:
        """Return the snapshot time as epoch nanoseconds (for ordering and selection)."""
        return parse_ns(self.time)[0]

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
    def from_json(cls, obj: JSONObject, snapshot_id: str = "") -> Snapshot:
        """Parse a snapshot file's JSON object. Raise KeyError/TypeError/ValueError if
        malformed."""
        get = obj.get
        summary = get("summary")
        return cls(
            time=str(obj["time"]),
            tree=bytes.fromhex(_string(obj["tree"], "tree")),
            paths=_strings(get("paths"), "paths"),
            hostname=str(get("hostname") or ""),
            username=str(get("username") or ""),
            uid=_integer(get("uid"), "uid"),
            gid=_integer(get("gid"), "gid"),
            excludes=_strings(get("excludes"), "excludes"),
            tags=_strings(get("tags"), "tags"),
            parent=_optional_id(get("parent"), "parent"),
            original=_optional_id(get("original"), "original"),
            program_version=str(get("program_version") or ""),
            summary=SnapshotSummary.from_json(summary) if isinstance(summary, dict) else None,
            extra={k: v for k, v in obj.items() if k not in _KNOWN},
            id=snapshot_id,
        )


_KNOWN = frozenset({"time", "parent", "tree", "paths", "hostname", "username", "uid", "gid",
                    "excludes", "tags", "original", "program_version", "summary"})


def _string(value: JSONValue, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is not a string")
    return value


def _strings(value: JSONValue, what: str) -> list[str]:
    """Return a list of strings; absent (null or empty) is an empty list."""
    if not value:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is not a list")
    out = []
    for v in value:
        if not isinstance(v, str):
            raise TypeError(f"{what} holds a non-string")
        out.append(v)
    return out


def _integer(value: JSONValue, what: str) -> int:
    """Return ``int(value)``; absent (null or 0) is 0."""
    if not value:
        return 0
    if isinstance(value, (list, dict)):
        raise TypeError(f"{what} is not a number")
    return int(value)


def _optional_id(value: JSONValue, what: str) -> bytes | None:
    return bytes.fromhex(_string(value, what)) if value else None
