"""Global CLI options and the one place where a repository is opened from them."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass, field

from airflow_backup.cli.keyhint import remember_key
from airflow_backup.cli.password import from_command, from_file, password_source
from airflow_backup.errors import ConfigError
from airflow_backup.repository.config import CONFIG_HANDLE
from airflow_backup.repository.opener import open_repository as open_with_cache
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import Storage
from airflow_backup.storage.compose import faults_from_env, is_remote_url, open_repository_storage
from airflow_backup.storage.retry import RetryPolicy

__all__ = [
    "GlobalOptions",
    "fallback_password",
    "new_password",
    "open_repository",
    "open_storage_for",
    "read_password",
    "repository_url",
]


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
    options: list[str] = field(default_factory=list)
    no_cache: bool = False
    cache_dir: str = ""


def read_password(gopts: GlobalOptions, prompt: str = "enter password for repository: ") -> str:
    """Return the repository password from, in order: --password-file,
    AIRFLOW_BACKUP_PASSWORD_FILE, AIRFLOW_BACKUP_PASSWORD, AIRFLOW_BACKUP_PASSWORD_COMMAND,
    RESTIC_PASSWORD_FILE, RESTIC_PASSWORD, or a prompt when stdin is a terminal.

    Raise ConfigError if none is available. The password never appears in argv or logs.
    """
    kind, value = password_source(gopts.password_file)
    if kind == "password":
        return value
    if kind == "command":
        return from_command(value)
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
        pw = from_file(file_option)
    elif env.get("AIRFLOW_BACKUP_NEW_PASSWORD_FILE"):
        pw = from_file(env["AIRFLOW_BACKUP_NEW_PASSWORD_FILE"])
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


def fallback_password(gopts: GlobalOptions) -> str:
    """Return the fallback repositories' password: AIRFLOW_BACKUP_FALLBACK_PASSWORD_FILE if
    set, else the same sources as the primary's."""
    path = os.environ.get("AIRFLOW_BACKUP_FALLBACK_PASSWORD_FILE")
    return from_file(path) if path else read_password(gopts)



def retry_policy(gopts: GlobalOptions) -> RetryPolicy:
    """Return the retry policy from ``-o retry_*=VALUE`` options. Raise ConfigError."""
    opts: dict[str, str] = {}
    for item in gopts.options:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"invalid option {item!r}: use KEY=VALUE")
        if not key.startswith("retry_"):
            raise ConfigError(f"unknown option {key!r} (repository-specific options go into "
                              "the URL's query string, e.g. s3://bucket/prefix?region=eu-west-1)")
        opts[key] = value
    return RetryPolicy.from_options(opts)


def open_storage_for(url: str, gopts: GlobalOptions, *, primary: bool = True) -> Storage:
    """Open a repository's storage with retries (and, for the primary only, the fault
    injection of AIRFLOW_BACKUP_FAULTS, for drills)."""
    return open_repository_storage(url, policy=retry_policy(gopts),
                                   faults=faults_from_env() if primary else None,
                                   read_ahead=is_remote_url(url))


def open_repository(gopts: GlobalOptions, url: str | None = None,
                    password: str | None = None, *, primary: bool = True) -> Repository:
    """Open the repository named by the global options (or ``url``). Remote repositories use
    the metadata cache unless --no-cache. Raise RepositoryNotFound, WrongPassword,
    ConfigError or a storage error."""
    url = url or repository_url(gopts)
    storage = open_storage_for(url, gopts, primary=primary)
    if not storage.exists(CONFIG_HANDLE):
        # Fail before asking for a password: there is nothing to unlock.
        Repository.open(storage, "")
    if password is None:
        password = read_password(gopts)
    cache = is_remote_url(url) and not gopts.no_cache
    repo = open_with_cache(storage, password, gopts.key_hint or None, cache=cache,
                           cache_root=gopts.cache_dir or None)
    if cache:
        # Lets the next command start this key's derivation early (cli/start.py).
        remember_key(url, storage, repo.key_id, gopts.cache_dir)
    return repo
