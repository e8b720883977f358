"""Child processes and temp directories that a source owns, always cleaned up.

:class:`Resources` is what a source holds: every process it starts (in its own process group,
so grandchildren die too) and every temp directory it makes. :meth:`Resources.close` kills
what still runs and removes what is left; sources call it from ``cleanup()``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from airflow_backup.errors import (
    BackupError,
    DumpFailed,
    RestoreError,
    SourceAuthFailed,
    SourceUnavailable,
    ToolMissing,
)

if TYPE_CHECKING:
    from airflow_backup.sources.base import SnapshotReader

__all__ = ["Child", "Resources", "classify_failure", "find_tool"]

_STDERR_KEEP = 16 * 1024

_UNAVAILABLE = ("could not connect", "connection refused", "can't connect", "could not translate",
                "no such host", "name or service not known", "timeout expired",
                "unknown database", "does not exist", "lost connection", "server closed",
                "no route to host", "unable to open database")
_AUTH = ("password authentication failed", "access denied", "authentication failed",
         "no password supplied", "peer authentication failed")


def find_tool(name: str, env_var: str = "") -> str:
    """Return the path of the program ``name`` (or the one named by ``env_var``).

    Raise ToolMissing if it is not installed.
    """
    override = os.environ.get(env_var, "") if env_var else ""
    path = shutil.which(override or name)
    if path is None:
        raise ToolMissing(f"{override or name}: program not found on PATH "
                          f"(install the client tools, e.g. apt-get install "
                          f"{_PACKAGE_HINT.get(name, name)})")
    return path


_PACKAGE_HINT = {"pg_dump": "postgresql-client", "pg_restore": "postgresql-client",
                 "pg_dumpall": "postgresql-client", "psql": "postgresql-client",
                 "mariadb-dump": "mariadb-client", "mariadb": "mariadb-client",
                 "airflow": "apache-airflow (pip)"}


def classify_failure(what: str, message: str, default: type[BackupError] = DumpFailed
                     ) -> BackupError:
    """Return the error for a failed client program or driver call, from its message."""
    low = message.lower()
    line = _last_line(message)
    # A missing role is a login failure only when the connection itself fails (FATAL); a
    # restore's "ERROR: role ... does not exist" is about the dump's owners and grants.
    if any(k in low for k in _AUTH) or ("role \"" in low and "does not exist" in low
                                         and "fatal" in low):
        return SourceAuthFailed(f"{what}: credentials rejected: {line}")
    if any(k in low for k in _UNAVAILABLE):
        return SourceUnavailable(f"{what}: source unavailable: {line}")
    return default(f"{what} failed: {line}")


#: The last line of a Python traceback: ``package.module.SomeError: what happened``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Failure):\s*\S")
_ERROR_WORD = re.compile(r"\b(?:error|fatal)\b", re.IGNORECASE)


def _last_line(message: str) -> str:
    # "-- " lines are a client's --verbose progress, never the error.
    lines = [ln.strip() for ln in message.strip().splitlines()
             if ln.strip() and not ln.startswith("-- ")]
    # A Python program (the airflow CLI) ends with its exception: that is the cause, not
    # the source lines of the traceback above it.
    exceptions = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    if exceptions:
        return exceptions[-1][:300]
    # Else the first line that says "error"; client tools print context after it.
    for ln in lines:
        if _ERROR_WORD.search(ln):
            return ln[:300]
    return lines[-1][:300] if lines else "(no message)"


class _LineFilter:
    """A write-only stream that passes on the lines ``keep`` accepts (any line length)."""

    def __init__(self, out: IO[bytes], keep: Callable[[bytes], bool]) -> None:
        self._out, self._keep, self._rest = out, keep, b""

    def write(self, data: bytes) -> int:
        lines = (self._rest + bytes(data)).split(b"\n")
        self._rest = lines.pop()
        kept = [ln + b"\n" for ln in lines if self._keep(ln + b"\n")]
        if kept:
            self._out.write(b"".join(kept))
        return len(data)

    def flush(self) -> None:
        """Flush what was passed on (a partial line waits for its end)."""
        self._out.flush()

    def finish(self) -> None:
        """Pass on the last line if it has no newline."""
        if self._rest and self._keep(self._rest):
            self._out.write(self._rest)
        self._rest = b""


class Child:
    """A started child process: stdout is a pipe (or a given file), stderr is collected."""

    def __init__(self, argv: Sequence[str], what: str,
                 env: Mapping[str, str | None] | None = None,
                 stdin: int | IO[bytes] | None = subprocess.DEVNULL,
                 stdout: int | IO[bytes] | None = subprocess.PIPE, cwd: str | None = None,
                 ) -> None:
        self.what = what
        self._stderr = bytearray()
        self._seen = threading.Condition()
        full_env = dict(os.environ)
        for key, value in (env or {}).items():  # None: leave the variable out
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        try:
            self.proc = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout,
                                         stderr=subprocess.PIPE, env=full_env, cwd=cwd,
                                         start_new_session=True)
        except OSError as exc:
            raise ToolMissing(f"cannot start {argv[0]}: {exc.strerror}") from None
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        # read1: whatever has arrived, so wait_for_stderr sees a line as soon as it is printed.
        stderr = cast(io.BufferedReader, self.proc.stderr)
        for chunk in iter(lambda: stderr.read1(4096), b""):
            with self._seen:
                self._stderr += chunk
                if len(self._stderr) > 2 * _STDERR_KEEP:
                    del self._stderr[:-_STDERR_KEEP]
                self._seen.notify_all()
        with self._seen:
            self._done = True
            self._seen.notify_all()

    _done = False

    def wait_for_stderr(self, marker: bytes, timeout: float) -> bool:
        """Wait until the child has printed ``marker`` on stderr; return False if it closed
        stderr (exited) or ``timeout`` seconds passed first."""
        with self._seen:
            return self._seen.wait_for(lambda: marker in self._stderr or self._done,
                                       timeout) and marker in self._stderr

    @property
    def stdout(self) -> BinaryIO:
        """Return the child's standard output pipe."""
        assert self.proc.stdout is not None
        return cast(BinaryIO, self.proc.stdout)

    @property
    def stdin(self) -> BinaryIO:
        """Return the child's standard input pipe."""
        assert self.proc.stdin is not None
        return cast(BinaryIO, self.proc.stdin)

    def stderr_text(self) -> str:
        """Return what the child printed on stderr (the last 16 KiB)."""
        self._reader.join(timeout=5)
        return bytes(self._stderr[-_STDERR_KEEP:]).decode("utf-8", "replace")

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child and its stderr; return its exit status."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def check(self, default: type[BackupError] = DumpFailed) -> None:
        """Wait; raise a classified SourceError if the child exited non-zero."""
        code = self.wait()
        if code != 0:
            raise classify_failure(f"{self.what} (exit status {code})", self.stderr_text(),
                                   default)

    def kill(self) -> None:
        """Stop the child's whole process group if it still runs, and reap it."""
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._reader.join(timeout=5)


class Resources:
    """Processes and temp directories owned by one source; :meth:`close` releases all."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._dirs: list[str] = []

    def start(self, argv: Sequence[str], what: str, **kwargs: object) -> Child:
        """Start a child process (see :class:`Child`) and remember it."""
        child = Child(argv, what, **kwargs)  # type: ignore[arg-type]
        self._children.append(child)
        return child

    def feed(self, argv: Sequence[str], what: str, reader: SnapshotReader, path: str, *,
             env: Mapping[str, str] | None = None,
             stdout: int | IO[bytes] | None = subprocess.DEVNULL,
             error: type[BackupError] = RestoreError,
             keep_line: Callable[[bytes], bool] | None = None) -> None:
        """Run ``argv`` with the stored file ``path`` streamed into its standard input, and
        wait for it. Raise ``error`` (or a classified source error) if it exits non-zero.
        ``keep_line`` (given each line, with its newline) leaves out the lines it refuses.

        A child that stops reading early is judged by its exit status alone. If reading the
        stored file fails, the child is killed before it sees the end of its input: a
        client such as ``psql --single-transaction`` would otherwise commit a cut-off dump.
        """
        child = self.start(argv, what, env=env, stdin=subprocess.PIPE, stdout=stdout)
        try:
            if keep_line is None:
                reader.copy_to(path, child.stdin)
            else:
                lines = _LineFilter(child.stdin, keep_line)
                reader.copy_to(path, cast(BinaryIO, lines))
                lines.finish()
            child.stdin.close()
        except BrokenPipeError:
            with contextlib.suppress(BrokenPipeError):
                child.stdin.close()
        except BaseException:
            child.kill()
            raise
        child.check(error)

    def temp_dir(self, label: str) -> str:
        """Make a private temp directory (mode 0700) and remember it."""
        path = tempfile.mkdtemp(prefix=f"airflow-backup-{label}-")
        self._dirs.append(path)
        return path

    def remove(self, path: str) -> None:
        """Remove one temp directory made by :meth:`temp_dir` now."""
        if path in self._dirs:
            self._dirs.remove(path)
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Kill every child still running and remove every temp directory."""
        while self._children:
            self._children.pop().kill()
        while self._dirs:
            shutil.rmtree(self._dirs.pop(), ignore_errors=True)
