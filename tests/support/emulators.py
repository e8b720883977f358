"""Cloud storage emulators on 127.0.0.1 for tests: never a real cloud endpoint.

Each runs as a subprocess on a free loopback port (see :mod:`support.moto` for the pattern),
is waited for until it answers HTTP, and is stopped on ``close``. A missing emulator skips the
test locally and fails it under CI=true (``make venv`` and ``make tools`` install them).

Nothing in here imports ``airflow_backup``.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from support.tools import in_ci

__all__ = ["EmulatorProcess", "missing"]


def missing(message: str) -> None:
    """Skip the test (locally) or fail it (CI=true) because an emulator is not installed."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: `make venv tools` should have installed it)",
                    pytrace=False)
    pytest.skip(f"{message}; `make venv tools` installs it")


class EmulatorProcess:
    """A server subprocess that answers HTTP at ``endpoint``; a context manager."""

    def __init__(self, name: str, argv: Sequence[str], endpoint: str, *, cwd: Path,
                 log_path: Path, env: dict[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        self.name = name
        self.endpoint = endpoint
        self._log = open(log_path, "wb")  # noqa: SIM115
        self._log_path = log_path
        self._proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while True:
            if self._proc.poll() is not None:
                self.close()
                raise RuntimeError(f"{name} exited with status {self._proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers: that is all we need
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"{name} did not start in time") from None
                time.sleep(0.1)

    def close(self) -> None:
        """Stop the server (and wait for it)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
