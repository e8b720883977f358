"""BackupFreshnessTrigger: poll a repository (in a thread) until a fresh snapshot exists.

The triggerer imports this module in its event loop, where every other trigger runs: it
imports only Airflow's trigger base and the error tree. The engine (the hook, repository
code, the snapshot filter) is imported by :func:`find_fresh_snapshot`, in the worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_backup.errors import BackupError

__all__ = ["BackupFreshnessTrigger", "find_fresh_snapshot"]


def find_fresh_snapshot(conn_id: str, *, job: str | None, tags: Sequence[str],
                        host: str | None, max_age_seconds: float,
                        now: float | None = None) -> dict[str, Any] | None:
    """Return ``{"snapshot_id", "time", "age_seconds"}`` of the newest snapshot matching
    ``job``/``tags``/``host`` if it is at most ``max_age_seconds`` old, else None. Blocking;
    engine errors propagate."""
    from airflow_backup.provider.hooks.repository import BackupRepositoryHook
    from airflow_backup.provider.operators.base import snapshot_filter
    from airflow_backup.repository.select import select_snapshots

    repo = BackupRepositoryHook(conn_id).get_repository()
    snaps = select_snapshots(repo, snapshot_filter(job=job, tags=tags, host=host))
    if not snaps:
        return None
    newest = max(snaps, key=lambda s: (s.time_ns, s.id))
    age = (time.time() if now is None else now) - newest.time_ns / 1e9
    if age > max_age_seconds:
        return None
    return {"snapshot_id": newest.id, "time": newest.time, "age_seconds": round(age, 3)}


class BackupFreshnessTrigger(BaseTrigger):
    """Every ``poke_interval`` seconds, look for a snapshot newer than ``max_age_seconds``
    (the blocking engine call runs in a thread). Yields one event: ``{"status": "success",
    "snapshot": {...}}``, or ``{"status": "error", "message": ...}`` for a non-retryable
    engine error; retryable errors (storage hiccups, locks) just wait for the next poll."""

    def __init__(self, *, backup_repository_conn_id: str, max_age_seconds: float,
                 job: str | None = None, tags: Sequence[str] = (), host: str | None = None,
                 poke_interval: float = 60.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's is untyped
        self.backup_repository_conn_id = backup_repository_conn_id
        self.max_age_seconds = float(max_age_seconds)
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the keyword arguments that rebuild this trigger."""
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "backup_repository_conn_id": self.backup_repository_conn_id,
            "max_age_seconds": self.max_age_seconds, "job": self.job, "tags": self.tags,
            "host": self.host, "poke_interval": self.poke_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until fresh (or a permanent error); yield exactly one event."""
        while True:
            try:
                found = await asyncio.to_thread(
                    find_fresh_snapshot, self.backup_repository_conn_id, job=self.job,
                    tags=self.tags, host=self.host, max_age_seconds=self.max_age_seconds)
            except BackupError as exc:
                if not exc.retryable:
                    yield TriggerEvent(  # type: ignore[no-untyped-call]
                        {"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                    return
                self.log.warning("retryable error while polling: %s", exc)
                found = None
            if found is not None:
                yield TriggerEvent(  # type: ignore[no-untyped-call]
                    {"status": "success", "snapshot": found})
                return
            await asyncio.sleep(self.poke_interval)
