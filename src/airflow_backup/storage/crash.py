"""Crash injection for tests: a storage wrapper that fails or kills the process at the k-th
mutating operation (random faults and latency for drills are in :mod:`.faults`).

Crash-safety tests run a command as a subprocess with the hook armed through the environment
(:func:`wrap_from_env`), let it die after its k-th write, and then check what the repository
looks like. Nothing arms the hook unless ``AIRFLOW_BACKUP_FAULT_AT`` or
``AIRFLOW_BACKUP_FAULT_JOURNAL`` is set.

``AIRFLOW_BACKUP_FAULT_AT=k``        fire at the k-th save/remove (1-based; 0 never fires)
``AIRFLOW_BACKUP_FAULT_MODE=kill``   ``kill`` (default): do the operation, then SIGKILL the process;
                                     ``raise``: raise InjectedFault instead of doing it
``AIRFLOW_BACKUP_FAULT_OPS=save,remove``  which operations count (default both)
``AIRFLOW_BACKUP_FAULT_JOURNAL=FILE`` append one line per counted operation ("save data/ab/…")
"""

from __future__ import annotations

import enum
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

from airflow_backup.errors import ConfigError, InjectedFault
from airflow_backup.storage.base import FileInfo, FileType, Handle, Storage, object_path

__all__ = ["CrashInjectingStorage", "Fault", "wrap_from_env"]

MUTATING_OPERATIONS = ("save", "remove")


class Fault(enum.Enum):
    """What happens when the hook fires."""

    RAISE = "raise"  # the operation is not done; InjectedFault is raised instead
    KILL = "kill"  # the operation completes, then the process dies with SIGKILL


def _sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashInjectingStorage:
    """A :class:`Storage` that forwards to ``inner`` and fires ``fault`` at the ``fail_at``-th
    counted operation (1-based; 0 disables the fault, which leaves a pure counter/journal).

    ``operations`` names the counted methods (``save`` and/or ``remove``). ``journal``, if
    given, is called with ``(operation, handle)`` after each counted operation completes,
    before a KILL fault fires. ``on_kill`` replaces the SIGKILL (for in-process tests).
    """

    def __init__(
        self,
        inner: Storage,
        *,
        fail_at: int,
        fault: Fault = Fault.RAISE,
        operations: Iterable[str] = MUTATING_OPERATIONS,
        journal: Callable[[str, Handle], None] | None = None,
        on_kill: Callable[[], None] = _sigkill_self,
    ) -> None:
        ops = frozenset(operations)
        unknown = ops - set(MUTATING_OPERATIONS)
        if unknown:
            raise ConfigError(f"fault injection: unknown operations {sorted(unknown)}")
        if fail_at < 0:
            raise ConfigError("fault injection: fail_at must be >= 0")
        self.inner = inner
        self.fail_at = fail_at
        self.fault = fault
        self.operations = ops
        self._journal = journal
        self._on_kill = on_kill
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Return how many counted operations have been started so far."""
        return self._count

    def _mutate(self, op: str, handle: Handle, action: Callable[[], None]) -> None:
        if op not in self.operations:
            action()
            return
        with self._lock:
            self._count += 1
            fire = self._count == self.fail_at
        if fire and self.fault is Fault.RAISE:
            raise InjectedFault(f"injected fault at operation {self._count}: "
                                f"{op} {object_path(handle)}")
        action()
        if self._journal is not None:
            self._journal(op, handle)
        if fire:
            self._on_kill()

    # ---- the Storage protocol -----------------------------------------------------------

    @property
    def location(self) -> str:
        """Return the wrapped store's location."""
        return self.inner.location

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save through the wrapped store, counting the operation."""
        self._mutate("save", handle, lambda: self.inner.save(handle, data))

    def remove(self, handle: Handle) -> None:
        """Remove through the wrapped store, counting the operation."""
        self._mutate("remove", handle, lambda: self.inner.remove(handle))

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load from the wrapped store."""
        return self.inner.load(handle, offset, length)

    def stat(self, handle: Handle) -> FileInfo:
        """Stat in the wrapped store."""
        return self.inner.stat(handle)

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """List the wrapped store."""
        return self.inner.list(file_type)

    def exists(self, handle: Handle) -> bool:
        """Ask the wrapped store."""
        return self.inner.exists(handle)

    def create_layout(self) -> None:
        """Create the wrapped store's layout."""
        self.inner.create_layout()


def _file_journal(path: str) -> Callable[[str, Handle], None]:
    def write(op: str, handle: Handle) -> None:
        # One O_APPEND write per line: the line is in the file even if SIGKILL follows.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{op} {object_path(handle)}\n".encode())
        finally:
            os.close(fd)

    return write


def wrap_from_env(storage: Storage, environ: Mapping[str, str] | None = None) -> Storage:
    """Given a store, return it wrapped in a FaultInjectingStorage if the environment arms
    the hook (see the module docstring), else unchanged. Raise ConfigError on bad values."""
    env = os.environ if environ is None else environ
    at_text = env.get("AIRFLOW_BACKUP_FAULT_AT", "")
    journal_path = env.get("AIRFLOW_BACKUP_FAULT_JOURNAL", "")
    if not at_text and not journal_path:
        return storage
    try:
        fail_at = int(at_text or "0")
        fault = Fault(env.get("AIRFLOW_BACKUP_FAULT_MODE", "kill"))
    except ValueError:
        raise ConfigError("AIRFLOW_BACKUP_FAULT_AT must be an integer and "
                          "AIRFLOW_BACKUP_FAULT_MODE 'kill' or 'raise'") from None
    ops = [o.strip() for o in env.get("AIRFLOW_BACKUP_FAULT_OPS", "save,remove").split(",")
           if o.strip()]
    return CrashInjectingStorage(storage, fail_at=fail_at, fault=fault, operations=ops,
                                 journal=_file_journal(journal_path) if journal_path else None)
