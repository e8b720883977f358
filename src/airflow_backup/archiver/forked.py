"""Worker processes forked from this one, for per-file work that the GIL would serialise.

Per-file Python and the AES and Poly1305 set-up that ``cryptography`` does while holding the
GIL make small files the one part of a backup that threads cannot spread over cores. A forked
child shares everything the parent already holds (the repository key above all, which thus
never crosses a pipe) without pickling it, and needs no module imports of its own.

A child serves requests one at a time over a pipe: ``serve(request)`` returns the reply. It
ignores SIGINT (the parent decides what an interrupt means), never runs the parent's
``atexit`` handlers or flushes its buffered output, and exits when the parent closes the
pipe, which happens too when the parent dies.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["ForkedWorker", "WorkerLost", "fork_workers", "forking_allowed"]

_ENV_DISABLE = "AIRFLOW_BACKUP_NO_FORK"
_fork_lock = threading.Lock()
# The parent's ends of every live worker's pipe: a child closes its copies of them, or a
# worker would not see EOF while a sibling forked after it still held its pipe open.
_parent_ends: set[Connection] = set()


class WorkerLost(RuntimeError):
    """A forked worker died or failed outside the work it was given."""


def forking_allowed() -> bool:
    """Return whether work may go to forked processes: the platform forks, more than one
    core is ours, and ``AIRFLOW_BACKUP_NO_FORK`` is not set to a non-empty value."""
    if not hasattr(os, "fork") or os.environ.get(_ENV_DISABLE):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores > 1


class ForkedWorker:
    """One forked child running ``serve``; :meth:`call` is for one thread at a time."""

    def __init__(self, serve: Callable[[Any], Any]) -> None:
        # Buffered output would otherwise be in both processes' buffers.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        # Imported here, not at start-up, where every command would pay for it.
        from multiprocessing.connection import Pipe

        here, there = Pipe()
        try:
            pid = os.fork()
        except OSError:
            here.close()
            there.close()
            raise
        if pid == 0:  # the child: never returns
            code = 1
            try:
                here.close()
                for other in list(_parent_ends):  # so that closing one is seen as EOF
                    other.close()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                # Keep the parent's objects out of collections here: a collection touches
                # every object it scans, and would copy the shared pages holding them.
                gc.freeze()
                _serve(there, serve)
                code = 0
            finally:
                os._exit(code)
        there.close()
        self.pid = pid
        self._conn: Connection | None = here
        _parent_ends.add(here)

    def call(self, request: Any) -> Any:
        """Send ``request``, wait for the reply and return it. Raise WorkerLost if the child
        is gone or raised (its error's text is kept; per-item errors belong in the reply)."""
        conn = self._conn
        if conn is None:
            raise WorkerLost("the worker process was closed")
        try:
            conn.send(request)
            ok, reply = conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerLost(f"worker process {self.pid} exited unexpectedly") from exc
        if not ok:
            raise WorkerLost(f"worker process {self.pid} failed: {reply}")
        return reply

    def close(self) -> None:
        """Close the pipe (the child then exits) and reap the child."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        _parent_ends.discard(conn)
        conn.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(conn: Connection, serve: Callable[[Any], Any]) -> None:
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, serve(request))
        except Exception as exc:  # the parent reports it; the child stays usable
            reply = (False, f"{type(exc).__name__}: {exc}")
        conn.send(reply)


def fork_workers(count: int, serve: Callable[[Any], Any]) -> list[ForkedWorker]:
    """Fork ``count`` workers running ``serve``; return them (fewer, or none, if forking
    fails: the caller then does the work itself)."""
    workers: list[ForkedWorker] = []
    with _fork_lock:  # two threads forking at once would each copy the other's pipe
        for _ in range(count):
            try:
                workers.append(ForkedWorker(serve))
            except OSError:
                break
    return workers
