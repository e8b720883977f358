"""Global CLI options and the one place where a repository is opened from them."""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from airflow_backup.errors import ConfigError
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.faults import wrap_from_env
from airflow_backup.storage.registry import open_storage

__all__ = ["GlobalOptions", "new_password", "open_repository", "read_password"]


@dataclass(slots=True)
class GlobalOptions:
    """Options every command accepts."""

    repo: str = ""
    password_file: str = ""
    key_hint: str = ""
    json: bool = False
    verbose: int = 0
    quiet: bool = False
    debug: bool = False
    retry_lock: float = 0.0


def _from_file(path: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None


def _from_command(command: str) -> str:
    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, check=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"password command failed to start: {exc}") from None
    if proc.returncode != 0:
        raise ConfigError(f"password command exited with status {proc.returncode}")
    return proc.stdout.decode("utf-8").rstrip("\r\n")


def read_password(gopts: GlobalOptions, prompt: str = "enter password for repository: ") -> str:
    """Return the repository password from, in order: --password-file,
    AIRFLOW_BACKUP_PASSWORD_FILE, AIRFLOW_BACKUP_PASSWORD, AIRFLOW_BACKUP_PASSWORD_COMMAND,
    RESTIC_PASSWORD_FILE, RESTIC_PASSWORD, or a prompt when stdin is a terminal.

    Raise ConfigError if none is available. The password never appears in argv or logs.
    """
    env = os.environ
    if gopts.password_file:
        return _from_file(gopts.password_file)
    if env.get("AIRFLOW_BACKUP_PASSWORD_FILE"):
        return _from_file(env["AIRFLOW_BACKUP_PASSWORD_FILE"])
    if "AIRFLOW_BACKUP_PASSWORD" in env:
        return env["AIRFLOW_BACKUP_PASSWORD"]
    if env.get("AIRFLOW_BACKUP_PASSWORD_COMMAND"):
        return _from_command(env["AIRFLOW_BACKUP_PASSWORD_COMMAND"])
    if env.get("RESTIC_PASSWORD_FILE"):
        return _from_file(env["RESTIC_PASSWORD_FILE"])
    if "RESTIC_PASSWORD" in env:
        return env["RESTIC_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise ConfigError(
        "no password given: use --password-file, AIRFLOW_BACKUP_PASSWORD, "
        "AIRFLOW_BACKUP_PASSWORD_FILE or AIRFLOW_BACKUP_PASSWORD_COMMAND"
    )


def new_password(file_option: str, gopts: GlobalOptions) -> str:
    """Return a new password for ``init`` / ``key add``: from ``file_option`` if given, else
    AIRFLOW_BACKUP_NEW_PASSWORD(_FILE), else the repository password sources, else a prompt
    asked twice on a terminal. Raise ConfigError if the two entries differ or it is empty."""
    env = os.environ
    if file_option:
        pw = _from_file(file_option)
    elif env.get("AIRFLOW_BACKUP_NEW_PASSWORD_FILE"):
        pw = _from_file(env["AIRFLOW_BACKUP_NEW_PASSWORD_FILE"])
    elif "AIRFLOW_BACKUP_NEW_PASSWORD" in env:
        pw = env["AIRFLOW_BACKUP_NEW_PASSWORD"]
    elif sys.stdin.isatty():
        pw = getpass.getpass("enter new password: ")
        if getpass.getpass("enter password again: ") != pw:
            raise ConfigError("passwords do not match")
    else:
        pw = read_password(gopts)
    if not pw:
        raise ConfigError("an empty password is not allowed")
    return pw


def repository_url(gopts: GlobalOptions) -> str:
    """Return the repository location from -r/--repo or the environment."""
    url = (gopts.repo or os.environ.get("AIRFLOW_BACKUP_REPOSITORY")
           or os.environ.get("RESTIC_REPOSITORY", ""))
    if not url:
        raise ConfigError("no repository given: use -r/--repo or AIRFLOW_BACKUP_REPOSITORY")
    return url


def open_repository(gopts: GlobalOptions) -> Repository:
    """Open the repository named by the global options. Raise RepositoryNotFound,
    WrongPassword or ConfigError."""
    # Storage wrappers are composed here, once. The fault hook is inert unless a test arms it
    # through AIRFLOW_BACKUP_FAULT_* variables.
    storage = wrap_from_env(open_storage(repository_url(gopts)))
    from airflow_backup.repository.config import CONFIG_HANDLE

    if not storage.exists(CONFIG_HANDLE):
        # Fail before asking for a password: there is nothing to unlock.
        Repository.open(storage, "")
    return Repository.open(storage, read_password(gopts), gopts.key_hint or None)
