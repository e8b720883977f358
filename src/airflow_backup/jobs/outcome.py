"""What a job run returns: the outcome of the whole run and a record per step (kept apart from
the runner so that notifications and renderers can use them without importing it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.outcome import Outcome

__all__ = ["JobOutcome", "StepRecord"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """How one step went: tries, time, and its outcome as a JSON document."""

    step: str
    attempts: int
    duration: float
    result: JSONObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome(Outcome):
    """The outcome of one job run: the store's status (success, partial, degraded) or
    ``failed`` with ``failed_step``; the snapshots stored and where; every step's record."""

    job: str
    attempts: int = 0
    failed_step: str = ""
    repository: str = ""
    location: str = ""
    snapshots: tuple[str, ...] = ()
    bytes_added: int = 0
    steps: tuple[StepRecord, ...] = ()
    notified: int = 0
