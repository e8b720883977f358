"""Reading a password from a file or a command: the one reader of each, shared by the CLI's
early start (which must not load the engine) and the operations layer's PasswordSource.
Errors name the file or say that the command failed; they never quote a password."""

from __future__ import annotations

import os

from airflow_backup.errors import ConfigError

__all__ = ["from_command", "from_file"]


#: What each password file held when first read in this process: a pipe or process
#: substitution (``--password-file <(echo pw)``) can be read only once, and the early key
#: derivation (cli/start.py) reads it before the command does.
_READ: dict[str, str] = {}


def from_file(path: str, what: str = "password file") -> str:
    """Return the content of ``path`` without its trailing newline, as restic reads it.
    Each file is read once per process, so a pipe such as ``<(echo pw)`` works. Raise
    ConfigError naming the file."""
    full = os.path.expanduser(path)
    if full in _READ:
        return _READ[full]
    try:
        with open(full, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    _READ[full] = value
    return value


def from_command(command: str, what: str = "password command") -> str:
    """Run ``command`` (no shell); return its output. Raise ConfigError if it fails."""
    import shlex
    import subprocess

    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, check=False,
                              timeout=60)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{what} did not finish within 60 s") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} failed to start: {type(exc).__name__}") from None
    if proc.returncode != 0:
        raise ConfigError(f"{what} exited with status {proc.returncode}")
    return proc.stdout.decode("utf-8").rstrip("\r\n")
