"""Where the repository and its password come from, without importing the rest of the CLI.

:mod:`airflow_backup.cli.start` asks before the CLI has loaded whether the password is at hand
without side effects (a file or the environment, not a command or a prompt), to start the
key derivation early; :func:`airflow_backup.cli.context.read_password` reads it for real.
Both follow :func:`password_source`, so they cannot disagree on the order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from airflow_backup.passwords import from_command, from_file

__all__ = ["from_command", "from_file", "option_value", "password_source", "repository_location"]


def repository_location(repo: str) -> str:
    """Given the -r/--repo value, return the repository location: it, else
    AIRFLOW_BACKUP_REPOSITORY, AIRFLOW_BACKUP_REPOSITORY_FILE (a file holding it),
    RESTIC_REPOSITORY, RESTIC_REPOSITORY_FILE, else ''. Raise ConfigError if a repository
    file cannot be read."""
    env = os.environ
    if repo:
        return repo
    for name in ("AIRFLOW_BACKUP_REPOSITORY", "RESTIC_REPOSITORY"):
        if env.get(name):
            return env[name]
        if env.get(f"{name}_FILE"):
            return from_file(env[f"{name}_FILE"], "repository file")
    return ""


def password_source(password_file: str) -> tuple[str, str]:
    """Given the --password-file value, return where the password comes from, in this order:
    --password-file, AIRFLOW_BACKUP_PASSWORD_FILE, AIRFLOW_BACKUP_PASSWORD,
    AIRFLOW_BACKUP_PASSWORD_COMMAND, RESTIC_PASSWORD_FILE, RESTIC_PASSWORD,
    RESTIC_PASSWORD_COMMAND, else a prompt.

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
    if env.get("RESTIC_PASSWORD_COMMAND"):
        return "command", env["RESTIC_PASSWORD_COMMAND"]
    return "prompt", ""


def option_value(argv: Sequence[str], names: tuple[str, ...]) -> str:
    """Return the value of the last of ``names`` in ``argv`` (``-r X``, ``-rX``,
    ``--repo X`` or ``--repo=X``), or "" if absent."""
    value = ""
    it = iter(argv)
    for arg in it:
        if arg == "--":
            break
        for name in names:
            if arg == name:
                value = next(it, "")
            elif name.startswith("--") and arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
            elif not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                value = arg[len(name) :]
    return value
