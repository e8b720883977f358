"""The export and validate steps: find out what will be backed up, and refuse bad input
before anything is stored.

Paths are checked for existence and readability; SQLite files among them pass SQLite's
``PRAGMA quick_check`` (a corrupt database would otherwise be backed up silently). Source URLs
are opened through the sources registry and described (server reachable, tables with row
counts); a database export itself streams straight into the repository in the store step and
is read back and validated by its source before its snapshot is committed.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from airflow_backup.errors import SourceError, SourceUnavailable
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.steps.common import StepResult, is_source_url

__all__ = ["ExportResult", "ValidateResult", "export_step", "validate_step"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class ExportResult(StepResult):
    """What the job will store: its paths, and per source URL what the source described."""

    job: str
    paths: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ValidateResult(StepResult):
    """The checks that passed (one line each)."""

    job: str
    checks: list[str] = field(default_factory=list)


def _describe(url: str) -> dict[str, Any]:
    try:
        from airflow_backup.sources.registry import open_source
    except ImportError:  # pragma: no cover - the sources package is part of the engine
        raise SourceError(f"source URLs need the sources package: {url.split('://')[0]}://")\
            from None
    source = open_source(url)
    try:
        described = {"kind": source.kind, "url": source.url.redacted(), **source.describe()}
    finally:
        source.cleanup()
    return described


def export_step(config: Config, job: str) -> ExportResult:
    """Resolve the job's sources. Raise SourceUnavailable if a path is missing or a source
    cannot be reached, ConfigError for an unknown source scheme."""
    spec = config.jobs[job]
    paths: list[str] = []
    sources: list[dict[str, Any]] = []
    for position, src in enumerate(spec.sources):
        if is_source_url(src):
            sources.append({**_describe(src), "position": position})
            continue
        path = os.path.abspath(os.path.expanduser(src.removeprefix("file://")))
        if not os.path.lexists(path):
            raise SourceUnavailable(f"source {path}: no such file or directory")
        paths.append(path)
    return ExportResult(job, paths, sources)


def _sqlite_ok(path: str) -> str:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    return "" if row and row[0] == "ok" else f"quick_check: {row[0] if row else 'no answer'}"


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def validate_step(config: Config, export: ExportResult) -> ValidateResult:
    """Check the export before it is stored. Raise SourceError naming the first problem."""
    checks: list[str] = []
    for path in export.paths:
        if not os.access(path, os.R_OK):
            raise SourceError(f"source {path}: not readable")
        candidates = [path] if os.path.isfile(path) else [
            os.path.join(d, f) for d, _, files in os.walk(path) for f in files
            if f.endswith((".sqlite", ".sqlite3", ".db"))]
        for c in candidates:
            if os.path.isfile(c) and _is_sqlite(c):
                problem = _sqlite_ok(c)
                if problem:
                    raise SourceError(f"source {c}: SQLite database is damaged: {problem}")
                checks.append(f"{c}: SQLite quick_check ok")
        checks.append(f"{path}: readable")
    for described in export.sources:
        tables = described.get("tables") or {}
        checks.append(f"{described.get('url')}: {described.get('kind')} reachable"
                      + (f", {len(tables)} table(s) described" if tables else ""))
    return ValidateResult(export.job, checks)
