"""A storage wrapper that injects faults: for tests, and for users' own failure drills.

:class:`FaultInjectingStorage` wraps any Storage and, per call, may add latency and raise an
injected error instead of (or after) doing the work, or kill the process right after a given
write. Settings, all keyword-only:

- ``latency``: seconds slept before *every* call;
- ``failure_rate``: probability that a call fails;
- ``fail_on_calls``: 1-based numbers of calls that fail (the k-th call, whatever it is);
- ``fail_after_writes``: the first k saves succeed, every later save fails (a store that dies
  mid-operation, for crash tests);
- ``truncate_writes``: probability that a failing save first stores a truncated prefix under
  the final name (a non-atomic store cut off mid-upload);
- ``lost_replies``: probability that a failing save first stores the whole file (the reply
  was lost, the write happened);
- ``permanent``: raise PermanentStorageError instead of TransientStorageError;
- ``operations``: restrict faults (not latency) to these operation names;
- ``seed``: make the random choices reproducible;
- ``crash_at``: the k-th write (save or remove, 1-based) completes, then the process dies
  with SIGKILL (a power cut between two writes); with ``crash_mode="raise"`` that write is
  not done and InjectedFault is raised instead (not retried);
- ``journal``: a file (or a callable) that gets one line per completed write,
  ``save data/ab/…`` or ``remove locks/…``, written before a crash fires.

Counters ``calls``, ``writes`` (saves), ``mutations`` (saves and removes) and ``injected``
tell a test what happened. Thread-safe. :func:`parse_fault_spec` reads the
``AIRFLOW_BACKUP_FAULTS`` syntax (``failure_rate=0.2,latency=0.05,seed=1`` or
``crash_at=7,journal=/tmp/writes.log``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import TypedDict, TypeVar

from airflow_backup.errors import (
    ConfigError,
    InjectedFault,
    PermanentStorageError,
    TransientStorageError,
)
from airflow_backup.storage.base import (
    FileInfo,
    FileType,
    Handle,
    Storage,
    load_into,
    object_path,
)
from airflow_backup.storage.wrapper import DelegatingStorage

__all__ = [
    "CRASH_MODES",
    "OPERATIONS",
    "FaultInjectingStorage",
    "FaultOptions",
    "file_journal",
    "parse_fault_spec",
]

T = TypeVar("T")

OPERATIONS = frozenset({"save", "load", "stat", "exists", "list", "remove", "create_layout"})
CRASH_MODES = ("kill", "raise")

Journal = Callable[[str, Handle], None]


def _sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def file_journal(path: str | os.PathLike[str]) -> Journal:
    """Return a journal that appends ``"<operation> <object path>"`` lines to ``path``."""
    def write(op: str, handle: Handle) -> None:
        # One O_APPEND write per line: the line is in the file even if SIGKILL follows.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{op} {object_path(handle)}\n".encode())
        finally:
            os.close(fd)

    return write


class FaultInjectingStorage(DelegatingStorage):
    """Wraps ``inner``; injects latency and failures as configured (see the module doc).
    Location and capabilities are the wrapped store's."""

    def __init__(self, inner: Storage, *, failure_rate: float = 0.0, latency: float = 0.0,
                 fail_on_calls: Collection[int] = (), fail_after_writes: int | None = None,
                 truncate_writes: float = 0.0, lost_replies: float = 0.0,
                 permanent: bool = False, operations: Collection[str] | None = None,
                 seed: int | None = None, crash_at: int = 0, crash_mode: str = "kill",
                 journal: str | os.PathLike[str] | Journal | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_kill: Callable[[], None] = _sigkill_self) -> None:
        for name, p in (("failure_rate", failure_rate), ("truncate_writes", truncate_writes),
                        ("lost_replies", lost_replies)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1")
        if truncate_writes + lost_replies > 1.0:
            raise ConfigError("truncate_writes + lost_replies must not exceed 1")
        unknown = set(operations or ()) - OPERATIONS
        if unknown:
            raise ConfigError(f"unknown storage operation(s): {', '.join(sorted(unknown))}")
        if crash_at < 0 or crash_mode not in CRASH_MODES:
            raise ConfigError("crash_at must be >= 0 and crash_mode 'kill' or 'raise'")
        if isinstance(journal, (str, os.PathLike)) and not os.fspath(journal):
            raise ConfigError("journal must name a file")
        super().__init__(inner)
        self.failure_rate = failure_rate
        self.latency = latency
        self.fail_on_calls = frozenset(fail_on_calls)
        self.fail_after_writes = fail_after_writes
        self.truncate_writes = truncate_writes
        self.lost_replies = lost_replies
        self.permanent = permanent
        self.operations = frozenset(operations) if operations is not None else OPERATIONS
        self._rng = random.Random(seed)
        self.crash_at = crash_at
        self.crash_mode = crash_mode
        self._journal = (file_journal(journal) if isinstance(journal, (str, os.PathLike))
                         else journal)
        self._sleep = sleep
        self._on_kill = on_kill
        self._lock = threading.Lock()
        self.calls = 0
        self.writes = 0
        self.mutations = 0
        self.injected = 0

    def _decide(self, op: str) -> tuple[bool, float]:
        """Count the call; return (fail?, a uniform draw for how a failing save fails)."""
        with self._lock:
            self.calls += 1
            k = self.calls
            if op == "save":
                self.writes += 1
            fail = op in self.operations and (
                k in self.fail_on_calls
                or (op == "save" and self.fail_after_writes is not None
                    and self.writes > self.fail_after_writes)
                or (self.failure_rate > 0 and self._rng.random() < self.failure_rate))
            draw = self._rng.random()
            if fail:
                self.injected += 1
        return fail, draw

    def _error(self, op: str, target: str) -> Exception:
        kind = PermanentStorageError if self.permanent else TransientStorageError
        return kind(f"{op} {target}: injected fault (call {self.calls})")

    def _run(self, op: str, target: str, fn: Callable[[], T]) -> T:
        if self.latency > 0:
            self._sleep(self.latency)
        fail, _ = self._decide(op)
        if fail:
            raise self._error(op, target)
        return fn()

    def _mutate(self, op: str, handle: Handle, action: Callable[[], None]) -> None:
        """Do a write, journal it, and fire the crash hook if this is the ``crash_at``-th."""
        with self._lock:
            self.mutations += 1
            k = self.mutations
        fire = k == self.crash_at
        if fire and self.crash_mode == "raise":
            raise InjectedFault(f"injected fault at write {k}: {op} {object_path(handle)}")
        action()
        if self._journal is not None:
            self._journal(op, handle)
        if fire:
            self._on_kill()

    # ---- the Storage protocol ------------------------------------------------------------

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save, unless a fault is injected (which may leave a truncated or whole file)."""
        self._mutate("save", handle, lambda: self._save(handle, data))

    def _save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        if self.latency > 0:
            self._sleep(self.latency)
        fail, draw = self._decide("save")
        if not fail:
            self.inner.save(handle, data)
            return
        if draw < self.truncate_writes and len(data) > 1:
            self.inner.save(handle, data[: len(data) // 2])
        elif draw < self.truncate_writes + self.lost_replies:
            self.inner.save(handle, data)
        raise self._error("save", object_path(handle))

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load a range, unless a fault is injected."""
        return self._run("load", object_path(handle),
                         lambda: self.inner.load(handle, offset, length))

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read a range into ``buf``, unless a fault is injected."""
        return self._run("load", object_path(handle),
                         lambda: load_into(self.inner, handle, offset, buf))

    def stat(self, handle: Handle) -> FileInfo:
        """Stat, unless a fault is injected."""
        return self._run("stat", object_path(handle), lambda: self.inner.stat(handle))

    def exists(self, handle: Handle) -> bool:
        """Check existence, unless a fault is injected."""
        return self._run("exists", object_path(handle), lambda: self.inner.exists(handle))

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """List, unless a fault is injected (decided when called, not when iterated)."""
        return iter(self._run("list", file_type.value + "/",
                              lambda: list(self.inner.list(file_type))))

    def remove(self, handle: Handle) -> None:
        """Remove, unless a fault is injected."""
        self._mutate("remove", handle, lambda: self._run("remove", object_path(handle),
                                                         lambda: self.inner.remove(handle)))

    def create_layout(self) -> None:
        """Create the layout, unless a fault is injected."""
        self._run("create_layout", self.location, self.inner.create_layout)


class FaultOptions(TypedDict, total=False):
    """FaultInjectingStorage keyword arguments, as :func:`parse_fault_spec` reads them."""

    failure_rate: float
    latency: float
    truncate_writes: float
    lost_replies: float
    fail_after_writes: int
    seed: int
    crash_at: int
    crash_mode: str
    journal: str
    fail_on_calls: list[int]
    operations: list[str]
    permanent: bool


def parse_fault_spec(spec: str) -> FaultOptions:
    """Parse ``key=value,…`` into FaultInjectingStorage keyword arguments.

    Keys: failure_rate, latency, truncate_writes, lost_replies (numbers), fail_after_writes,
    seed, crash_at (integers), crash_mode (``kill``/``raise``), journal (a file path, which
    cannot hold a comma), fail_on_calls (``3+7+9``), operations (``save+load``), permanent
    (``1``/``true``). Raise ConfigError for anything else.
    """
    out: FaultOptions = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError
            match key:
                case "failure_rate" | "latency" | "truncate_writes" | "lost_replies":
                    out[key] = float(value)
                case "fail_after_writes" | "seed" | "crash_at":
                    out[key] = int(value)
                case "crash_mode" | "journal":
                    out[key] = value.strip()
                case "fail_on_calls":
                    out[key] = [int(v) for v in value.split("+") if v]
                case "operations":
                    out[key] = [v for v in value.split("+") if v]
                case "permanent":
                    out[key] = value.strip().lower() in ("1", "true", "yes")
                case _:
                    raise ConfigError(f"unknown fault option {key!r}")
        except ValueError:
            raise ConfigError(f"invalid fault option {item!r}") from None
    return out
