"""Where the repository password comes from, without importing the rest of the CLI.

:mod:`airflow_backup.cli.start` asks before the CLI has loaded whether the password is at hand
without side effects (a file or the environment, not a command or a prompt), to start the
key derivation early; :func:`airflow_backup.cli.context.read_password` reads it for real.
Both follow :func:`password_source`, so they cannot disagree on the order.
"""

from __future__ import annotations

import os

from airflow_backup.errors import ConfigError

__all__ = ["from_command", "from_file", "password_source"]


def from_file(path: str) -> str:
    """Return the first line of ``path``. Raise ConfigError if it cannot be read."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None


def from_command(command: str) -> str:
    """Run ``command`` (no shell); return its output. Raise ConfigError if it fails."""
    import shlex
    import subprocess  # here: the entry point reads passwords before anything else loads

    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, check=False,
                              timeout=60)
    except subprocess.TimeoutExpired:
        raise ConfigError("password command did not finish within 60 s") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"password command failed to start: {exc}") from None
    if proc.returncode != 0:
        raise ConfigError(f"password command exited with status {proc.returncode}")
    return proc.stdout.decode("utf-8").rstrip("\r\n")


def password_source(password_file: str) -> tuple[str, str]:
    """Given the --password-file value, return where the password comes from, in this order:
    --password-file, AIRFLOW_BACKUP_PASSWORD_FILE, AIRFLOW_BACKUP_PASSWORD,
    AIRFLOW_BACKUP_PASSWORD_COMMAND, RESTIC_PASSWORD_FILE, RESTIC_PASSWORD, else a prompt.

    Return ("password", the password) for a file or a variable, ("command", the command)
    or ("prompt", ""). Raise ConfigError if a password file cannot be read.
    """
    env = os.environ
    if password_file:
        return "password", from_file(password_file)
    if env.get("AIRFLOW_BACKUP_PASSWORD_FILE"):
        return "password", from_file(env["AIRFLOW_BACKUP_PASSWORD_FILE"])
    if "AIRFLOW_BACKUP_PASSWORD" in env:
        return "password", env["AIRFLOW_BACKUP_PASSWORD"]
    if env.get("AIRFLOW_BACKUP_PASSWORD_COMMAND"):
        return "command", env["AIRFLOW_BACKUP_PASSWORD_COMMAND"]
    if env.get("RESTIC_PASSWORD_FILE"):
        return "password", from_file(env["RESTIC_PASSWORD_FILE"])
    if "RESTIC_PASSWORD" in env:
        return "password", env["RESTIC_PASSWORD"]
    return "prompt", ""
