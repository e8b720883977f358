"""Progress of jobs, backups, restores, checks and drills, rendered for where output goes.

On a terminal: rich progress bars (files, bytes, rate, elapsed) on stderr. Not a terminal
(cron, Airflow logs): a plain line per step and at most one progress line every
``interval`` seconds. With ``--json``: one JSON status line per event on stdout. The engine
only emits events (:class:`~airflow_backup.jobs.events.JobEvents`); this is the renderer.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from airflow_backup.archiver.events import ArchiveStats
from airflow_backup.cli.output import human_size
from airflow_backup.jobs.events import JobEvents
from airflow_backup.jsontypes import JSONObject

__all__ = ["BackupBar", "JobProgress", "make_progress"]


class JobProgress(JobEvents):
    """Plain-text or JSON progress (the non-terminal renderers)."""

    def __init__(self, json_mode: bool, quiet: bool = False, interval: float = 10.0) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()
        self._job = ""

    def _emit(self, obj: dict[str, Any], text: str) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()
        elif not self.quiet:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def step_started(self, job: str, step: str, attempt: int) -> None:
        self._job = job
        self._emit({"message_type": "status", "job": job, "step": step, "attempt": attempt,
                    "state": "started"}, f"[{job}] {step} (attempt {attempt}) …")

    def step_finished(self, job: str, step: str, result: JSONObject) -> None:
        self._emit({"message_type": "status", "job": job, "step": step, "state": "done"},
                   f"[{job}] {step} done")

    def attempt_failed(self, job: str, step: str, error: str, retry_in: float | None) -> None:
        then = f"retrying in {retry_in:.1f}s" if retry_in is not None else "giving up"
        self._emit({"message_type": "status", "job": job, "step": step, "state": "failed",
                    "error": error, "retry_in": retry_in},
                   f"[{job}] {step} failed: {error}; {then}")

    def item_done(self, path: str, kind: str, size: int, stats: ArchiveStats) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        self._emit({"message_type": "status", "job": self._job, "step": "store",
                    "files_done": stats.total_files_processed,
                    "bytes_done": stats.total_bytes_processed},
                   f"[{self._job}] store: {stats.total_files_processed} files, "
                   f"{human_size(stats.total_bytes_processed)}")


class RichJobProgress(JobProgress):
    """rich progress bars on a terminal (stderr)."""

    def __init__(self) -> None:
        super().__init__(json_mode=False)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[files]} files"),
                                 TransferSpeedColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=False)
        self._task: Any = None

    def step_started(self, job: str, step: str, attempt: int) -> None:
        self._job = job
        if self._task is None:
            self.progress.start()
        else:
            self.progress.update(self._task, completed=1, total=1)
        self._task = self.progress.add_task(f"{job}: {step}", total=None, files=0)

    def step_finished(self, job: str, step: str, result: JSONObject) -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=1, total=1)
        if step == "notify":
            self.progress.stop()
            self._task = None

    def attempt_failed(self, job: str, step: str, error: str, retry_in: float | None) -> None:
        then = f"retrying in {retry_in:.1f}s" if retry_in is not None else "giving up"
        self.progress.console.print(f"[red]{job}: {step} failed[/red]: {error}; {then}")

    def item_done(self, path: str, kind: str, size: int, stats: ArchiveStats) -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=stats.total_bytes_processed,
                                 files=stats.total_files_processed)


class BackupBar:
    """A rich live line for a plain ``backup`` on a terminal: files, bytes, rate, elapsed.
    Callable from worker threads (rich's Progress is thread-safe)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(SpinnerColumn(), TextColumn("backup"),
                                 TextColumn("{task.fields[files]} files"), DownloadColumn(),
                                 TransferSpeedColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("backup", total=None, files=0)
        self.progress.start()

    def update(self, stats: ArchiveStats) -> None:
        """Show the running totals."""
        self.progress.update(self.task, completed=stats.total_bytes_processed,
                             files=stats.total_files_processed)

    def close(self) -> None:
        """Remove the bar."""
        self.progress.stop()


def make_progress(json_mode: bool, quiet: bool) -> JobProgress:
    """Return the renderer for the current output: JSON lines, rich bars on a terminal, or
    plain periodic lines."""
    if json_mode or quiet or not sys.stderr.isatty():
        return JobProgress(json_mode, quiet)
    return RichJobProgress()
