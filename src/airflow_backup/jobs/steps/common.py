"""What every step shares: the open-repository cache, job tags, and telling paths from URLs.

Step functions take the config, a job name and small JSON-able inputs, and return a frozen
dataclass whose :meth:`to_json` is JSON-able, so the Airflow provider can run each step as a
separate task (passing results through XCom) while the CLI runs them in one process.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_backup.jobs.config import Config
from airflow_backup.jobs.repos import open_named
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot

__all__ = [
    "DRILL_TAG",
    "JobSession",
    "StepResult",
    "is_job_snapshot",
    "is_source_url",
    "job_tag",
]

#: Tag of the snapshots that record a restore drill (never removed by a job's retention).
DRILL_TAG = "airflow-backup-drill"
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def job_tag(job: str) -> str:
    """Return the tag that marks the snapshots of ``job``."""
    return f"job={job}"


def is_source_url(source: str) -> bool:
    """Return whether a job source is a URL (a data source) rather than a path."""
    return bool(_URL_RE.match(source)) and not source.startswith("file://")


def is_job_snapshot(sn: Snapshot, job: str) -> bool:
    """Return whether ``sn`` is a backup (not a drill record) of ``job``."""
    return job_tag(job) in sn.tags and DRILL_TAG not in sn.tags


@dataclass(frozen=True, slots=True)
class StepResult:
    """Base of step results."""

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-able dict."""
        return asdict(self)


@dataclass(slots=True)
class JobSession:
    """Repositories opened during one run, by name, so that consecutive steps in one process
    open (and derive the key of) each repository once. Steps run in separate processes each
    pass a fresh session."""

    config: Config
    repos: dict[str, Repository] = field(default_factory=dict)

    def repository(self, name: str, *, primary: bool = True) -> Repository:
        """Return repository ``name``, opening it on first use (``primary``: whether the
        fault-injection hook of drills and tests applies, see ``open_named``)."""
        if name not in self.repos:
            self.repos[name] = open_named(self.config, name, primary=primary)
        return self.repos[name]
