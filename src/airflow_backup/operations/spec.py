"""Where a repository is and how to open it: the one :class:`RepositorySpec` and the one
:func:`open_repository`, used by the CLI, the job runner and the Airflow provider alike.

A front end translates its inputs (global flags, a jobs config entry, an Airflow connection)
into a spec; everything after that is the same code. Passwords are read when the repository
is opened, after its ``config`` file is found, and never stored in the spec's repr.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError, RepositoryNotFound
from airflow_backup.passwords import from_command, from_file
from airflow_backup.repository.opener import open_cached
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import Storage
from airflow_backup.storage.cache import resolve_cache_root
from airflow_backup.storage.compose import (
    display_location,
    faults_from_env,
    is_remote_url,
    open_repository_storage,
)
from airflow_backup.storage.limiter import RateLimits
from airflow_backup.storage.retry import RetryPolicy

__all__ = [
    "CacheSpec",
    "PasswordKind",
    "PasswordSource",
    "RepositorySpec",
    "open_repository",
]


class PasswordKind(enum.StrEnum):
    """Where a password comes from."""

    FILE = "file"          # a file's first line
    ENV = "env"            # an environment variable
    COMMAND = "command"    # a command's output (run without a shell)
    VALUE = "value"        # given directly (an Airflow connection's password field)
    READER = "reader"      # asked for by the front end (the CLI's prompt)


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """A reference to a password. ``reference`` is the file, variable or command (for
    VALUE the password itself, hidden from repr); ``reader`` asks for it (READER)."""

    kind: PasswordKind
    reference: str = field(default="", repr=False)
    reader: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    label: str = "repository"

    def read(self) -> str:
        """Return the password. Raise ConfigError naming the reference (never the value)."""
        match self.kind:
            case PasswordKind.FILE:
                return from_file(self.reference, f"{self.label} password file")
            case PasswordKind.ENV:
                value = os.environ.get(self.reference)
                if value is None:
                    raise ConfigError(f"{self.label}: environment variable {self.reference} "
                                      "is not set")
                return value
            case PasswordKind.COMMAND:
                return from_command(self.reference, f"{self.label}: password command")
            case PasswordKind.VALUE:
                return self.reference
            case PasswordKind.READER:
                if self.reader is None:
                    raise ConfigError(f"{self.label}: no password given")
                return self.reader()


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """The local cache: ``enabled`` None means "for remote repositories"; ``root`` is the
    cache directory (default: AIRFLOW_BACKUP_CACHE_DIR, XDG_CACHE_HOME or ~/.cache)."""

    enabled: bool | None = None
    root: str = ""

    def metadata_cache(self, url: str) -> bool:
        """Return whether repository metadata is cached for ``url``."""
        return self.enabled is not False and is_remote_url(url)

    def directory_cache(self) -> str | None:
        """Return where a backup keeps what it knows of the last backup's directories, or
        None when the cache is switched off."""
        return None if self.enabled is False else str(resolve_cache_root(self.root or None))


@dataclass(frozen=True, slots=True)
class RepositorySpec:
    """Everything needed to open one repository and its fallbacks.

    ``name`` is how the front end calls it (config name, connection id, or the location);
    ``storage`` replaces opening ``url`` (an Airflow connection's own S3 client);
    ``inject_faults`` applies AIRFLOW_BACKUP_FAULTS (drills and tests; primary only);
    ``no_lock`` opens it without writing shared locks (restic's --no-lock: read-only media).
    """

    url: str
    password: PasswordSource
    name: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cache: CacheSpec = field(default_factory=CacheSpec)
    lock_wait: float = 0.0
    key_hint: str = ""
    inject_faults: bool = True
    no_lock: bool = False
    fallbacks: tuple[RepositorySpec, ...] = ()
    #: restic's --limit-upload/--limit-download (KiB/s; 0 unlimited), around the backend.
    limits: RateLimits = field(default_factory=RateLimits)
    storage: Callable[[], Storage] | None = field(default=None, compare=False)

    @property
    def location(self) -> str:
        """Return the location without credentials or query (safe to show)."""
        return display_location(self.url)

    @property
    def label(self) -> str:
        """Return the name if it has one, else the location."""
        return self.name or self.location

    def chain(self) -> tuple[RepositorySpec, ...]:
        """Return this repository and then its fallbacks, in the order they are tried."""
        return (self, *self.fallbacks)

    def open_storage(self) -> Storage:
        """Return the repository's storage with its wrappers (retries, faults, read-ahead)."""
        if self.storage is not None:
            return self.storage()
        faults = faults_from_env() if self.inject_faults else None
        return open_repository_storage(self.url, policy=self.retry, faults=faults,
                                       read_ahead=is_remote_url(self.url),
                                       limits=self.limits or None)


def init_repository(spec: RepositorySpec, version: int = 2) -> tuple[bool, str]:
    """Create the repository ``spec`` names with its password, unless one is there already.
    Return ``(created, repository id)``; raise WrongPassword if an existing one does not
    open with the password (so a typo is found now, not at the first backup)."""
    storage = spec.open_storage()
    try:
        sealed = Repository.load_sealed_config(storage)
    except RepositoryNotFound:
        return True, Repository.init(storage, spec.password.read(), version=version).config.id
    repo = Repository.open(storage, spec.password.read(), spec.key_hint or None,
                           sealed_config=sealed)
    return False, repo.config.id


def open_repository(spec: RepositorySpec) -> Repository:
    """Open the repository ``spec`` names (not its fallbacks). A missing repository is
    reported before the password is read. Raise RepositoryNotFound, WrongPassword,
    ConfigError or a storage error."""
    storage = spec.open_storage()
    # Loaded once, before the password is read (nothing to unlock if it is missing), and
    # handed to the opening: every check of the config is a round trip on object stores.
    sealed = Repository.load_sealed_config(storage)
    repo = open_cached(storage, spec.password.read(), spec.key_hint or None,
                       cache=spec.cache.metadata_cache(spec.url),
                       cache_root=spec.cache.root or None, sealed_config=sealed)
    repo.no_lock = spec.no_lock
    return repo
