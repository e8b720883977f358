"""External tools for tests: find them (skip locally, fail on CI) and run restic safely."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

__all__ = [
    "ResticError",
    "in_ci",
    "require_tool",
    "restic_version",
    "run_restic",
]

#: Environment variables that would change which repository, password or cache restic
#: uses behind the test's back; run_restic removes them before adding its own.
_RESTIC_ENV_VARS = (
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_KEY_HINT",
    "RESTIC_CACHE_DIR",
    "RESTIC_COMPRESSION",
    "RESTIC_PACK_SIZE",
    "RESTIC_READ_CONCURRENCY",
    "RESTIC_HOST",
)


def in_ci() -> bool:
    """True when the CI environment variable is "true" (as CI sets it)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require_tool(name: str) -> str:
    """Return the path of the executable ``name``.

    When it is missing, the test fails if CI=true (CI must have every tool: ``make
    tools`` installs them) and is skipped otherwise.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"required tool {name!r} is not on PATH"
    if in_ci():
        pytest.fail(f"{message} (CI=true: `make tools` should have installed it)", pytrace=False)
    pytest.skip(f"{message}; `make tools` installs it")


class ResticError(subprocess.CalledProcessError):
    """A restic run that exited non-zero; ``str()`` includes what it printed."""

    def __str__(self) -> str:
        def tail(data: bytes | str | None) -> str:
            if not data:
                return "(nothing)"
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            return text[-4000:]

        return (
            f"{super().__str__()}\n--- stdout ---\n{tail(self.stdout)}"
            f"\n--- stderr ---\n{tail(self.stderr)}"
        )


def run_restic(
    repo: Path | str,
    *args: str | os.PathLike[str] | bytes,
    password: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    restic_bin: str | None = None,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``restic -r REPO --no-cache ARGS...`` and return the completed process.

    The password travels in RESTIC_PASSWORD (never in argv); other RESTIC_* variables
    from the caller's environment are dropped, then ``env`` is applied on top.  Output
    is captured as bytes.  With ``check`` a non-zero exit raises ``ResticError``.
    """
    binary = restic_bin or require_tool("restic")
    full_env = {k: v for k, v in os.environ.items() if k not in _RESTIC_ENV_VARS}
    full_env["RESTIC_PASSWORD"] = password
    if env:
        full_env.update(env)
    argv: list[str | bytes | os.PathLike[str]] = [binary, "-r", str(repo), "--no-cache", *args]
    proc = subprocess.run(
        argv,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=False,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ResticError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def restic_version(restic_bin: str) -> tuple[int, int, int]:
    """The version of a restic binary, e.g. ``(0, 14, 0)``."""
    out = subprocess.run(
        [restic_bin, "version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    match = re.search(r"restic (\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise ValueError(f"cannot parse restic version from {out!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch
