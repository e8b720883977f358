"""Forked workers: requests and replies cross the pipe, failures are reported, children exit."""

from __future__ import annotations

import os
import signal
import time

import pytest

from airflow_backup.archiver.forked import ForkedWorker, WorkerLost, fork_workers, forking_allowed


def _exited(pid: int, timeout: float = 10.0) -> bool:
    """Return whether ``pid`` (a child of ours) has exited, reaping it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        time.sleep(0.01)
    return False


def _serve(request: object) -> object:
    if request == "boom":
        raise ValueError("no such thing")
    if request == "pid":
        return os.getpid()
    return ("echo", request)


def test_a_worker_runs_requests_in_another_process_and_exits_when_closed() -> None:
    worker = ForkedWorker(_serve)
    try:
        assert worker.call([b"a", 1]) == ("echo", [b"a", 1])
        assert worker.call("pid") == worker.pid != os.getpid()
    finally:
        worker.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(worker.pid, os.WNOHANG)  # reaped by close()
    with pytest.raises(WorkerLost, match="closed"):
        worker.call("x")


def test_an_error_in_the_work_is_reported_and_the_worker_stays_usable() -> None:
    worker = ForkedWorker(_serve)
    try:
        with pytest.raises(WorkerLost, match="ValueError: no such thing"):
            worker.call("boom")
        assert worker.call(7) == ("echo", 7)
    finally:
        worker.close()


def test_a_dead_worker_is_reported_not_waited_for() -> None:
    worker = ForkedWorker(_serve)
    try:
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerLost, match="exited unexpectedly"):
            worker.call(1)
    finally:
        worker.close()


def test_workers_ignore_sigint_and_each_exits_when_its_own_pipe_closes() -> None:
    """A worker forked later must not hold an earlier one's pipe open, or closing the
    earlier one would leave it running."""
    first, second = fork_workers(2, _serve)
    try:
        os.kill(first.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        assert first.call(1) == ("echo", 1)
        pid = first.pid
        conn = first._conn
        assert conn is not None
        conn.close()  # as close() does, without reaping, to watch the child go
        first._conn = None
        assert _exited(pid)
        assert second.call(2) == ("echo", 2)
    finally:
        first.close()
        second.close()


def test_forking_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_BACKUP_NO_FORK", "1")
    assert not forking_allowed()
    monkeypatch.setenv("AIRFLOW_BACKUP_NO_FORK", "")
    assert forking_allowed() == (len(os.sched_getaffinity(0)) > 1)
