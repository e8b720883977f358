"""SQLite: a consistent copy through the online backup API, even while writers are active.

URL: ``sqlite:///absolute/path/to/file.db``. The backup API copies the database into a
private temp file (the API needs a destination database; this is the one temp copy), which is
checked (``PRAGMA integrity_check``), counted and streamed into the repository, then removed.
Restore writes a new file next to the target, checks it, and swaps it in with an atomic
rename; an existing target is kept aside as ``<file>.before-restore-<time>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from typing import ClassVar

from airflow_backup.errors import (
    ConfigError,
    RestoreMismatch,
    RestoreTargetExists,
    SourceUnavailable,
    ValidationFailed,
)
from airflow_backup.sources.base import (
    ExportSink,
    RestoreReport,
    SnapshotReader,
    SourceRestoreOptions,
    SourceURL,
    StoredExport,
    TableCheck,
    iter_tables,
    restored_stats,
)
from airflow_backup.sources.metadata import (
    ExportFacts,
    SourceDescription,
    TableStats,
    ValidationFacts,
)
from airflow_backup.sources.process import Resources

__all__ = ["SQLiteSource", "sqlite_table_stats"]

_HEADER = b"SQLite format 3\x00"


def sqlite_table_stats(conn: sqlite3.Connection) -> dict[str, TableStats]:
    """Return ``{table: {rows, checksum}}``; the checksum is an order-independent sum of
    SHA-256 prefixes of each row's ``repr``."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    out: dict[str, TableStats] = {}
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        rows = 0
        total = 0
        for row in conn.execute(f"SELECT * FROM {quoted}"):
            rows += 1
            digest = hashlib.sha256(repr(tuple(row)).encode()).digest()
            total = (total + int.from_bytes(digest[:8], "big")) % (1 << 64)
        out[name] = {"rows": rows, "checksum": f"sqlitesum:{total:016x}"}
    return out


def _integrity(path: str) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


class SQLiteSource:
    """One SQLite database file; see the module docstring."""

    kind: ClassVar[str] = "sqlite"
    #: The URL query options this source reads; any other is an error (a typo must not
    #: silently change what is backed up, or where from).
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, url: SourceURL) -> None:
        if url.scheme != "sqlite" or not url.path or url.path == "/":
            raise ConfigError("SQLite URLs look like sqlite:///absolute/path/to/file.db")
        self.url = url
        # sqlite:////abs/path (SQLAlchemy's spelling) and sqlite:///abs/path name the same
        # file; a path starting with '//' would be a URI authority to sqlite3.
        self.path = "/" + url.path.lstrip("/")
        self.res = Resources()
        self._copy = ""

    def probe(self) -> SourceDescription:
        """Check that the file is a SQLite database that can be opened read-only (its
        schema version is read; no table is)."""
        if not os.path.isfile(self.path):
            raise SourceUnavailable(f"SQLite database {self.path}: no such file")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                conn.execute("PRAGMA schema_version").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"SQLite database {self.path}: {exc}") from None
        return {"databases": [os.path.basename(self.path)]}

    def describe(self) -> SourceDescription:
        """Copy the database with the online backup API; check and count the copy."""
        if not os.path.isfile(self.path):
            raise SourceUnavailable(f"SQLite database {self.path}: no such file")
        self._copy = os.path.join(self.res.temp_dir("sqlite"), "copy.db")
        try:
            src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            dst = sqlite3.connect(self._copy)
            try:
                src.backup(dst)
                stats = sqlite_table_stats(dst)
            finally:
                dst.close()
                src.close()
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"SQLite database {self.path}: {exc}") from None
        check = _integrity(self._copy)
        if check != "ok":
            raise ValidationFailed(f"copy of {self.path} fails integrity_check: {check}")
        return {"tool_version": f"sqlite {sqlite3.sqlite_version}", "databases":
                [os.path.basename(self.path)], "integrity_check": check, "tables": stats}

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Stream the consistent copy into the sink, then delete it."""
        path = "sqlite/" + os.path.basename(self.path)
        with open(self._copy, "rb") as f:
            size = sink.add_stream(path, f)
        self._head = sink.head(path)
        self.res.close()
        return {"files": {path: size}}

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Check the stored file starts with the SQLite header."""
        if not self._head.startswith(_HEADER):
            raise ValidationFailed(f"stored copy of {self.path} lacks the SQLite header")
        return {"header": "SQLite format 3"}

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Write a new file beside the target, verify it, then swap it in atomically."""
        files = stored.reader.files("sqlite")
        if len(files) != 1:
            raise ConfigError("snapshot does not hold exactly one SQLite database")
        exists = os.path.lexists(self.path)
        if exists and not (options.force or options.clean):
            raise RestoreTargetExists(f"{self.path} already exists: pass --force to swap the "
                                      "restored file in (the old one is kept aside)")
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise ConfigError(f"{directory}: no such directory")
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.restore-{os.getpid()}")
        try:
            with open(tmp, "xb") as out:
                stored.reader.copy_to(files[0], out)
                os.fsync(out.fileno())
            check = _integrity(tmp)
            conn = sqlite3.connect(f"file:{tmp}?mode=ro", uri=True)
            try:
                actual = sqlite_table_stats(conn)
            finally:
                conn.close()
            checks = [TableCheck(t, rows, checksum, *restored_stats(actual, t))
                      for t, rows, checksum in iter_tables(stored.source)]
            if check != "ok" or not all(c.ok for c in checks):
                raise RestoreMismatch(f"restored copy of {self.path} does not match the backup "
                                      f"(integrity_check: {check}); target left unchanged")
            aside = ""
            if exists:
                aside = f"{self.path}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}"
                os.link(self.path, aside)
                for suffix in ("-wal", "-shm", "-journal"):
                    if os.path.exists(self.path + suffix):
                        os.replace(self.path + suffix, aside + suffix)
            os.replace(tmp, self.path)
            _fsync_dir(directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return RestoreReport(f"sqlite://{self.path}", checks,
                             {"integrity_check": check, "kept_aside": aside})

    def cleanup(self) -> None:
        """Remove the temp copy."""
        self.res.close()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
