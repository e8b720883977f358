"""Open the repositories a config names: password by reference, storage retry policy,
fallback chain. Passwords are read when a repository is opened and never stored or shown."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config, RepositoryConfig
from airflow_backup.jobs.fallback import RepositoryTarget
from airflow_backup.repository.opener import open_repository
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.compose import (
    display_location,
    faults_from_env,
    is_remote_url,
    open_repository_storage,
)
from airflow_backup.storage.retry import RetryPolicy

__all__ = ["display_location", "open_named", "read_repository_password", "targets_for"]


def read_repository_password(name: str, rc: RepositoryConfig) -> str:
    """Return the password of repository ``name`` from its file, variable or command.
    Raise ConfigError (naming the reference, never the value) if it cannot be read."""
    if rc.password_file:
        try:
            with open(os.path.expanduser(rc.password_file), encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"repository {name}: cannot read password_file "
                              f"{rc.password_file}: {exc.strerror}") from None
    if rc.password_env:
        value = os.environ.get(rc.password_env)
        if value is None:
            raise ConfigError(f"repository {name}: environment variable {rc.password_env} "
                              "(password_env) is not set")
        return value
    assert rc.password_command
    try:
        proc = subprocess.run(shlex.split(rc.password_command), capture_output=True,
                              check=False, timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"repository {name}: password_command failed to start: "
                          f"{type(exc).__name__}") from None
    if proc.returncode != 0:
        raise ConfigError(f"repository {name}: password_command exited with status "
                          f"{proc.returncode}")
    return proc.stdout.decode("utf-8").rstrip("\r\n")


def open_named(config: Config, name: str, *, primary: bool = True) -> Repository:
    """Open repository ``name`` of ``config`` (storage retries per its policy; the primary
    also honours AIRFLOW_BACKUP_FAULTS, for drills). Raise RepositoryNotFound, WrongPassword,
    ConfigError or a storage error."""
    rc = config.repositories[name]
    r = rc.retry
    policy = RetryPolicy(r.attempts, r.base_delay, r.max_delay, r.max_time)
    storage = open_repository_storage(rc.url, policy=policy,
                                      faults=faults_from_env() if primary else None,
                                      read_ahead=is_remote_url(rc.url))
    from airflow_backup.repository.config import CONFIG_HANDLE
    if not storage.exists(CONFIG_HANDLE):
        Repository.open(storage, "")  # raises RepositoryNotFound before reading a password
    password = read_repository_password(name, rc)
    return open_repository(storage, password, cache=is_remote_url(rc.url))


def targets_for(config: Config, name: str) -> list[tuple[str, RepositoryTarget]]:
    """Return ``(repository name, target)`` for ``name`` and then each of its fallbacks."""
    names = [name, *config.repositories[name].fallbacks]

    def opener(n: str, primary: bool) -> Callable[[], Repository]:
        return lambda: open_named(config, n, primary=primary)

    return [(n, RepositoryTarget(display_location(config.repositories[n].url),
                                 opener(n, i == 0)))
            for i, n in enumerate(names)]
