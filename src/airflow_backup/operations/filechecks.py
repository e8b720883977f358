"""Checks of files on disk shared by the job's validate step and the restore drill."""

from __future__ import annotations

import hashlib
import sqlite3

__all__ = ["SQLITE_MAGIC", "is_sqlite", "sha256_file", "sqlite_problem"]

SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite(path: str) -> bool:
    """Return whether ``path`` starts with SQLite's file header."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def sqlite_problem(path: str) -> str:
    """Return what ``PRAGMA quick_check`` finds wrong with the database at ``path`` ('' if
    nothing), opened read-only."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    return "" if row and row[0] == "ok" else f"quick_check: {row[0] if row else 'no answer'}"


def sha256_file(path: str) -> str:
    """Return the SHA-256 of the file at ``path``, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
