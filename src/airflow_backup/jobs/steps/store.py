"""The store step: write the job's snapshots into its repository, or a fallback.

Paths go into one snapshot through the Archiver; each source URL into one snapshot through
the sources package (export streamed into the repository, read back and validated by the
source, then committed). Every snapshot is tagged ``job=<name>``. If the primary repository
cannot take the data (storage down, retries used up, no repository), the whole step moves to
the next fallback (:mod:`airflow_backup.jobs.fallback`) and the result is ``degraded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.archiver.events import ArchiveEvents
from airflow_backup.jobs.config import Config
from airflow_backup.jobs.fallback import Attempt, RepositoryTarget, run_with_fallback
from airflow_backup.jobs.repos import targets_for
from airflow_backup.jobs.steps.common import JobSession, StepResult, job_tag
from airflow_backup.jobs.steps.export import ExportResult
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.cache import resolve_cache_root

__all__ = ["DEGRADED_TAG", "StoreResult", "store_step"]

#: Extra tag of snapshots stored in a fallback repository.
DEGRADED_TAG = "degraded"


@dataclass(frozen=True, slots=True)
class StoreResult(StepResult):
    """Where the snapshots went and what they hold. ``snapshots``: one dict per snapshot with
    ``id``, ``source``, ``files``, ``bytes`` (processed), ``added`` and ``stored`` (bytes)."""

    job: str
    repository: str
    location: str
    degraded: bool = False
    reasons: list[str] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bytes_added(self) -> int:
        """Return the bytes of new data stored (after compression)."""
        return sum(int(s.get("stored", 0)) for s in self.snapshots)


def _store_all(repo: Repository, config: Config, export: ExportResult, attempt: Attempt,
               primary: str, events: ArchiveEvents | None) -> list[dict[str, Any]]:
    spec = config.jobs[export.job]
    tags = [job_tag(export.job), *spec.tags] + ([DEGRADED_TAG] if attempt.degraded else [])
    out: list[dict[str, Any]] = []
    if export.paths:
        meta: dict[str, object] = {"job": export.job}
        if attempt.degraded:
            meta["degraded"] = {"primary": primary,
                                "reasons": [f"{loc}: {why}" for loc, why in attempt.failures]}
        result = Archiver(repo, events).backup(BackupOptions(
            paths=list(export.paths), excludes=list(spec.excludes), tags=tags, metadata=meta,
            dir_cache=str(resolve_cache_root())))
        s = result.stats
        out.append({"id": result.snapshot.id, "source": "files", "paths": export.paths,
                    "files": s.total_files_processed, "bytes": s.total_bytes_processed,
                    "added": s.data_added, "stored": s.data_added_packed,
                    "errors": len(s.errors)})
    for described in export.sources:
        url = config.jobs[export.job].sources[int(described["position"])]
        out.append(_store_source(repo, url, str(described["url"]), tags))
    return out


def _store_source(repo: Repository, url: str, redacted: str, tags: list[str]) -> dict[str, Any]:
    from airflow_backup.sources.actions import backup_source

    result = backup_source(repo, url, tags=tags)
    s = result.stats
    return {"id": result.snapshot.id, "source": redacted,
            "kind": str(result.metadata.get("source", {}).get("kind", "")),
            "files": s.total_files_processed, "bytes": s.total_bytes_processed,
            "added": s.data_added, "stored": s.data_added_packed, "errors": 0}


def store_step(config: Config, export: ExportResult, session: JobSession | None = None,
               events: ArchiveEvents | None = None) -> StoreResult:
    """Store the export; return where it went. Raise StorageError if no repository could
    take it, SourceError if a source failed during its export, ConfigError for bad input."""
    session = session or JobSession(config)
    spec = config.jobs[export.job]
    named = targets_for(config, spec.repository)
    names = [n for n, _ in named]

    def opener(n: str, primary: bool) -> RepositoryTarget:
        target = dict(named)[n]
        return RepositoryTarget(target.location,
                                lambda: session.repository(n, primary=primary))

    targets = [opener(n, i == 0) for i, n in enumerate(names)]
    primary = targets[0].location
    chosen = run_with_fallback(
        targets, lambda repo, attempt: _store_all(repo, config, export, attempt, primary,
                                                  events),
        lock_retry=config.repositories[spec.repository].lock_wait)
    return StoreResult(export.job, names[chosen.index], chosen.location, chosen.degraded,
                       [f"{loc}: {why}" for loc, why in chosen.failures], chosen.value)
