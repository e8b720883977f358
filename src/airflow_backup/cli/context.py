"""Global CLI options and the one place where a repository is opened from them."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass, field

from airflow_backup.cli.keyhint import read_key_hint, remember_key
from airflow_backup.cli.password import password_source
from airflow_backup.errors import ConfigError
from airflow_backup.operations.spec import (
    CacheSpec,
    PasswordKind,
    PasswordSource,
    RepositorySpec,
)
from airflow_backup.operations.spec import open_repository as open_spec
from airflow_backup.passwords import from_command, from_file
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.limiter import RateLimits
from airflow_backup.storage.retry import RetryPolicy

__all__ = [
    "GlobalOptions",
    "new_password",
    "open_repository",
    "read_password",
    "repository_spec",
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
    no_lock: bool = False
    limit_upload: int = 0
    limit_download: int = 0

    @property
    def limits(self) -> RateLimits:
        """Return --limit-upload/--limit-download (KiB/s, 0 unlimited)."""
        return RateLimits(self.limit_upload, self.limit_download)


def read_password(gopts: GlobalOptions, prompt: str = "enter password for repository: ") -> str:
    """Return the repository password from, in order: --password-file,
    AIRFLOW_BACKUP_PASSWORD_FILE, AIRFLOW_BACKUP_PASSWORD, AIRFLOW_BACKUP_PASSWORD_COMMAND,
    RESTIC_PASSWORD_FILE, RESTIC_PASSWORD, RESTIC_PASSWORD_COMMAND, or a prompt when stdin
    is a terminal.

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


def new_password(file_option: str, gopts: GlobalOptions, *, init: bool = False) -> str:
    """Return a new password: from ``file_option`` if given, else
    AIRFLOW_BACKUP_NEW_PASSWORD(_FILE); for ``init`` then the repository password sources
    every other command reads (--password-file, AIRFLOW_BACKUP_PASSWORD(_FILE|_COMMAND),
    RESTIC_PASSWORD(_FILE)) — so that the repository opens with the password the next
    command will give; else a prompt asked twice on a terminal (``key add``/``passwd`` never
    take the current password as the new one). Raise ConfigError if the two entries differ
    or it is empty."""
    env = os.environ
    kind, given = password_source(gopts.password_file) if init else ("prompt", "")
    if file_option:
        pw = from_file(file_option)
    elif env.get("AIRFLOW_BACKUP_NEW_PASSWORD_FILE"):
        pw = from_file(env["AIRFLOW_BACKUP_NEW_PASSWORD_FILE"])
    elif "AIRFLOW_BACKUP_NEW_PASSWORD" in env:
        pw = env["AIRFLOW_BACKUP_NEW_PASSWORD"]
    elif kind == "password":
        pw = given
    elif kind == "command":
        pw = from_command(given)
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
    from airflow_backup.cli.password import repository_location

    url = repository_location(gopts.repo)
    if not url:
        raise ConfigError("no repository given: use -r/--repo or AIRFLOW_BACKUP_REPOSITORY")
    return url


def cache_spec(gopts: GlobalOptions) -> CacheSpec:
    """Return the cache settings of --no-cache and --cache-dir."""
    return CacheSpec(enabled=False if gopts.no_cache else None, root=gopts.cache_dir)


def _password(gopts: GlobalOptions) -> PasswordSource:
    return PasswordSource(PasswordKind.READER, reader=lambda: read_password(gopts))


def _fallback_password(gopts: GlobalOptions) -> PasswordSource:
    """The fallback repositories' password: AIRFLOW_BACKUP_FALLBACK_PASSWORD_FILE if set,
    else the same sources as the primary's ."""
    path = os.environ.get("AIRFLOW_BACKUP_FALLBACK_PASSWORD_FILE")
    if path:
        return PasswordSource(PasswordKind.FILE, path, label="fallback repository")
    return _password(gopts)


def repository_spec(gopts: GlobalOptions, url: str | None = None,
                    fallbacks: tuple[str, ...] = ()) -> RepositorySpec:
    """Return the spec of the repository the global options name (or ``url``), with
    ``fallbacks`` (URLs, tried in order)."""
    url = url or repository_url(gopts)
    fb_password = _fallback_password(gopts) if fallbacks else None
    policy = retry_policy(gopts)
    cache = cache_spec(gopts)
    limits = gopts.limits
    chain = tuple(RepositorySpec(u, fb_password, retry=policy, cache=cache,
                                 lock_wait=gopts.retry_lock, inject_faults=False,
                                 limits=limits)
                  for u in fallbacks if fb_password is not None)
    return RepositorySpec(url, _password(gopts), retry=policy, cache=cache,
                          lock_wait=gopts.retry_lock, key_hint=gopts.key_hint or
                          _remembered_key(gopts, url, cache),
                          no_lock=gopts.no_lock, fallbacks=chain, limits=limits)


def _remembered_key(gopts: GlobalOptions, url: str, cache: CacheSpec) -> str:
    """Return the id of the key file that last opened the cached remote repository ``url``
    here (see :func:`remember`), or "": read first and directly, it spares listing the key
    files (a round trip on an object store)."""
    if not cache.metadata_cache(url):
        return ""
    hint = read_key_hint(url, gopts.cache_dir)
    return hint[0] if hint is not None else ""


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


def open_repository(gopts: GlobalOptions) -> Repository:
    """Open the repository named by the global options. Remote repositories use the metadata
    cache unless --no-cache. Raise RepositoryNotFound, WrongPassword, ConfigError or a
    storage error."""
    spec = repository_spec(gopts)
    repo = open_spec(spec)
    remember(gopts, spec, repo)
    return repo


def remember(gopts: GlobalOptions, spec: RepositorySpec, repo: Repository) -> None:
    """Note the key that opened a cached remote repository, so that the next command can
    start deriving it early (cli/start.py)."""
    if spec.cache.metadata_cache(spec.url):
        remember_key(spec.url, repo.storage, repo.key_id, gopts.cache_dir)
