"""Progress of jobs, backups, restores, checks and drills, rendered for where output goes.

On a terminal: rich progress bars (files, bytes, rate, elapsed) on stderr. Not a terminal
(cron, Airflow logs): a plain line per step and at most one progress line every
``interval`` seconds. With ``--json``: one JSON status line per event on stdout. The engine
only emits events (:class:`~airflow_backup.jobs.events.JobEvents`); this is the renderer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from airflow_backup.archiver.events import ArchiveStats
from airflow_backup.archiver.scan import Scanner, ScanTotals
from airflow_backup.cli.output import duration, human_size
from airflow_backup.jobs.events import JobEvents
from airflow_backup.jsontypes import JSONObject

__all__ = ["BackupStatus", "JobProgress", "PhaseProgress", "make_progress", "progress_fps"]


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


def progress_fps(default: float) -> float:
    """Updates per second: ``RESTIC_PROGRESS_FPS`` if set (as restic), else ``default``."""
    try:
        value = float(os.environ.get("RESTIC_PROGRESS_FPS", ""))
    except ValueError:
        return default
    return value if value > 0 else default


class BackupStatus:
    """A backup's progress as restic shows it. With the scan's totals (see
    :class:`~airflow_backup.archiver.scan.Scanner`): files and bytes done, the totals, and
    once the scan is complete the percentage and an ETA from the bytes rate so far. On a
    terminal one status line on stderr, redrawn (10 times a second); with ``--json`` a
    ``status`` message on stdout every second (restic's fields); ``RESTIC_PROGRESS_FPS``
    changes either rate. Items report through :meth:`update` from any thread."""

    def __init__(self, *, terminal: bool, json_mode: bool, scanner: Scanner | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.terminal, self.json_mode, self.scanner = terminal, json_mode, scanner
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._files = self._bytes = self._errors = 0
        self._current = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if terminal or json_mode:
            interval = 1.0 / progress_fps(10.0 if terminal else 1.0)
            self._thread = threading.Thread(target=self._tick, args=(interval,),
                                            name="backup-status", daemon=True)
            self._thread.start()

    def update(self, stats: ArchiveStats, path: str = "") -> None:
        """Take the running totals after an item."""
        with self._lock:
            self._files, self._bytes = stats.total_files_processed, stats.total_bytes_processed
            self._errors = len(stats.errors)
            self._current = path or self._current

    def update_stream(self, path: str, done: int) -> None:
        """Take the bytes read so far of a stream being backed up."""
        with self._lock:
            self._bytes, self._current = done, path

    def status(self) -> JSONObject:
        """Return restic's ``status`` message for now."""
        elapsed = self._clock() - self._started
        totals = self.scanner.totals() if self.scanner is not None else ScanTotals()
        with self._lock:
            files, done, errors, current = self._files, self._bytes, self._errors, self._current
        out: JSONObject = {"message_type": "status", "seconds_elapsed": int(elapsed)}
        if totals.done and totals.bytes:
            fraction = min(1.0, done / totals.bytes)
            out["percent_done"] = fraction
            if done:
                out["seconds_remaining"] = int(elapsed * (totals.bytes - done) / done)
        elif totals.done:
            out["percent_done"] = 1.0 if files >= totals.files else 0.0
        out.update({"total_files": totals.files, "files_done": files,
                    "total_bytes": totals.bytes, "bytes_done": done, "error_count": errors})
        if current:
            out["current_files"] = [current]
        return out

    def line(self) -> str:
        """Return restic's terminal status line for now."""
        st = self.status()
        text = f"[{duration(float(cast(int, st['seconds_elapsed'])))}] "
        if "percent_done" in st:
            text += f"{100 * cast(float, st['percent_done']):.2f}%  "
        text += (f"{st['files_done']} files {human_size(cast(int, st['bytes_done']))}, "
                 f"total {st['total_files']} files {human_size(cast(int, st['total_bytes']))}, "
                 f"{st['error_count']} errors")
        if "seconds_remaining" in st:
            text += f" ETA {duration(float(cast(int, st['seconds_remaining'])))}"
        return text

    def _draw(self) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(self.status()) + "\n")
            sys.stdout.flush()
        elif self.terminal:
            width = shutil.get_terminal_size((100, 20)).columns
            sys.stderr.write("\r\x1b[2K" + self.line()[:max(10, width - 1)])
            sys.stderr.flush()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._draw()
            except OSError:  # the reader went away (a closed pipe): stop drawing
                return

    def close(self) -> None:
        """Stop updating; clear the terminal line (a JSON run ends with its summary)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.terminal and not self.json_mode:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


#: What each phase of check and prune counts, as restic names it on its progress lines.
_PHASE_UNITS = {"snapshots": "snapshots", "index": "index files loaded", "packs": "packs",
                "read-data": "packs", "trees": "snapshots", "repack": "packs repacked",
                "delete": "files deleted"}


class PhaseProgress:
    """Progress of a phased operation (check, prune) as restic shows it: on a terminal one
    line per phase on stderr, ``[0:03] 45.00%  9 / 20 packs``, redrawn (10 times a second,
    ``RESTIC_PROGRESS_FPS``) and kept when the phase ends. Off a terminal, a line when a
    phase ends and every 10 seconds — only with ``verbose`` if ``quiet_off_terminal``.
    Nothing with ``--json`` or ``-q``. Called as ``progress(phase, done, total)`` (total 0:
    not known)."""

    def __init__(self, *, json_mode: bool, quiet: bool, verbose: bool = False,
                 quiet_off_terminal: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.terminal = not (json_mode or quiet) and sys.stderr.isatty()
        self.plain = (not (json_mode or quiet) and not self.terminal
                      and (verbose or not quiet_off_terminal))
        self._clock = clock
        self._phase = ""
        self._started = self._drawn = 0.0
        self._interval = 1.0 / progress_fps(10.0)

    def line(self, phase: str, done: int, total: int) -> str:
        """Return the line for ``done`` of ``total`` in ``phase`` now."""
        elapsed = self._clock() - self._started
        unit = _PHASE_UNITS.get(phase, phase)
        if total:
            return f"[{duration(elapsed)}] {100 * done / total:.2f}%  {done} / {total} {unit}"
        return f"[{duration(elapsed)}] {done} {unit}"

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self._clock()
        if phase != self._phase:
            self._phase, self._started, self._drawn = phase, now, 0.0
        finished = bool(total) and done >= total
        if self.terminal:
            if finished or now - self._drawn >= self._interval:
                self._drawn = now
                sys.stderr.write("\r\x1b[2K" + self.line(phase, done, total)
                                 + ("\n" if finished else ""))
                sys.stderr.flush()
        elif self.plain and (finished or now - self._drawn >= 10.0):
            self._drawn = now
            sys.stderr.write(self.line(phase, done, total) + "\n")
            sys.stderr.flush()


def make_progress(json_mode: bool, quiet: bool) -> JobProgress:
    """Return the renderer for the current output: JSON lines, rich bars on a terminal, or
    plain periodic lines."""
    if json_mode or quiet or not sys.stderr.isatty():
        return JobProgress(json_mode, quiet)
    return RichJobProgress()
