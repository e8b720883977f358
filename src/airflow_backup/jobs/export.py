"""The export and validate steps of a job: find out what will be backed up, and refuse bad
input before anything is stored.

Paths are checked for existence and readability; SQLite files among them pass SQLite's
``PRAGMA quick_check`` (a corrupt database would otherwise be backed up silently). Source URLs
are opened through the sources registry and probed (tools installed, server reachable,
credentials accepted: :meth:`~airflow_backup.sources.base.DataSource.probe`, which reads no
data); a database export itself streams straight into the repository in the store step and
is read back and validated by its source before its snapshot is committed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from airflow_backup.errors import ConfigError, SourceError, SourceMissing
from airflow_backup.jobs.config import Config
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.filechecks import is_sqlite, sqlite_problem
from airflow_backup.operations.outcome import Outcome

__all__ = ["DescribedSource", "ExportOutcome", "ValidateOutcome", "export_step",
           "is_source_url", "shown_source", "validate_step"]

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_source_url(source: str) -> bool:
    """Return whether a job source is a URL (a data source) rather than a path."""
    return bool(_URL_RE.match(source)) and not source.startswith("file://")


def shown_source(source: str) -> str:
    """A job source as runbooks, DAG params and messages may show it: a URL without
    password, user information or secret options (the config refuses them, but what is
    shown must not depend on that)."""
    if not is_source_url(source):
        return source
    from airflow_backup.sources.base import SourceURL

    try:
        return SourceURL.parse(source, allow_password=True).redacted()
    except ConfigError:
        return "<a source URL that cannot be read; see the config file>"


@dataclass(frozen=True, slots=True)
class DescribedSource:
    """A data source of the job as its probe found it (no credentials): its position in the
    job's ``sources``, redacted URL and kind."""

    position: int
    url: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOutcome(Outcome):
    """What the job will store: its paths, and its described data sources."""

    job: str
    paths: tuple[str, ...] = ()
    sources: tuple[DescribedSource, ...] = ()

    @classmethod
    def from_json(cls, doc: JSONObject) -> ExportOutcome:
        """Return the outcome from its :meth:`to_json` document (passed through XCom)."""
        sources = doc.get("sources") or []
        paths = doc.get("paths") or []
        assert isinstance(sources, list) and isinstance(paths, list)
        return cls(job=str(doc["job"]), paths=tuple(str(p) for p in paths),
                   sources=tuple(DescribedSource(int(str(s["position"])), str(s["url"]),
                                                 str(s["kind"]))
                                 for s in sources if isinstance(s, dict)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateOutcome(Outcome):
    """The checks that passed (one line each)."""

    job: str
    checks: tuple[str, ...] = ()


def _describe(url: str, position: int) -> DescribedSource:
    from airflow_backup.sources.registry import open_source

    source = open_source(url)
    try:
        # A probe, not a description: counts, checksums, locks and dumps are the store
        # step's (which describes the source once, at the export's snapshot).
        source.probe()
        return DescribedSource(position, source.url.redacted(), source.kind)
    finally:
        source.cleanup()


def export_step(config: Config, job: str) -> ExportOutcome:
    """Resolve the job's sources. Raise SourceMissing if a path is missing, SourceUnavailable
    if a source
    cannot be reached, ConfigError for an unknown source scheme."""
    spec = config.jobs[job]
    paths: list[str] = []
    sources: list[DescribedSource] = []
    for position, src in enumerate(spec.sources):
        if is_source_url(src):
            sources.append(_describe(src, position))
            continue
        path = os.path.abspath(os.path.expanduser(src.removeprefix("file://")))
        if not os.path.lexists(path):
            raise SourceMissing(f"source {path}: no such file or directory")
        paths.append(path)
    return ExportOutcome(job=job, paths=tuple(paths), sources=tuple(sources))


def validate_step(export: ExportOutcome) -> ValidateOutcome:
    """Check the export before it is stored. Raise SourceError naming the first problem."""
    checks: list[str] = []
    for path in export.paths:
        if not os.access(path, os.R_OK):
            raise SourceError(f"source {path}: not readable")
        candidates = [path] if os.path.isfile(path) else [
            os.path.join(d, f) for d, _, files in os.walk(path) for f in files
            if f.endswith((".sqlite", ".sqlite3", ".db"))]
        for c in candidates:
            if os.path.isfile(c) and is_sqlite(c):
                problem = sqlite_problem(c)
                if problem:
                    raise SourceError(f"source {c}: SQLite database is damaged: {problem}")
                checks.append(f"{c}: SQLite quick_check ok")
        checks.append(f"{path}: readable")
    for described in export.sources:
        checks.append(f"{described.url}: {described.kind} reachable")
    return ValidateOutcome(job=export.job, checks=tuple(checks))
