"""The progress callbacks of a job run (kept apart from the pipeline so that renderers can
subclass them without loading the config models)."""

from __future__ import annotations

from airflow_backup.archiver.events import ArchiveEvents
from airflow_backup.jsontypes import JSONObject

__all__ = ["JobEvents"]


class JobEvents(ArchiveEvents):
    """Callbacks of a job run (and of its backups); the defaults do nothing."""

    def step_started(self, job: str, step: str, attempt: int) -> None:
        """Called when a step begins."""

    def step_finished(self, job: str, step: str, result: JSONObject) -> None:
        """Called with a step's JSON-able result."""

    def attempt_failed(self, job: str, step: str, error: str, retry_in: float | None) -> None:
        """Called when an attempt fails; ``retry_in`` is None when no retry follows."""
