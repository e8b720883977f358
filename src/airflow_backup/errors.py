"""The one exception tree of airflow-backup.

Every error the engine raises derives from :class:`BackupError`. The tree is grouped by how a
caller reacts, not by where the error happened::

    BackupError
    ├── ConfigError                 bad input: flags, URLs, config files; fix and re-run
    │   ├── SnapshotNotFound        a snapshot selector matched nothing
    │   └── InvalidConfigFile       a jobs config file is malformed (exit 2, one line per problem)
    ├── SourceError                 a data source could not be read or exported
    │   ├── SourceUnavailable       the source is down or missing
    │   ├── SourceMissing           a source path does not exist (not retried)
    │   ├── SourceAuthFailed        the source rejected the credentials
    │   ├── ToolMissing             a client program (pg_dump, mariadb-dump, airflow) is absent
    │   ├── DumpFailed              the export started but did not complete; nothing was saved
    │   ├── ValidationFailed        the export was stored but failed its readability check
    │   └── PartialBackup           the backup finished, but some source files were unreadable
    ├── StorageError                the blob store failed
    │   ├── TransientStorageError   worth retrying: timeouts, throttling, resets
    │   ├── PermanentStorageError   retrying will not help: permissions, no space
    │   ├── NotFound                the named file does not exist
    │   ├── NoRepositoryAvailable   neither a repository nor its fallbacks took the data
    │   └── InjectedFault           a test fault hook failed the operation on purpose
    ├── RepositoryError             the repository refuses to be used
    │   ├── RepositoryNotFound      no repository at that location
    │   ├── RepositoryLocked        another process holds a conflicting lock
    │   ├── WrongPassword           no key file opens with the given password
    │   ├── IntegrityError          stored bytes do not match their id or MAC
    │   ├── WalConflict             a WAL file is already archived with different content
    │   └── WalGap                  the WAL archive misses files recovery needs (exit 1)
    ├── RestoreError                a restore could not write its target
    │   ├── UnsafePath              a tree names a path that would escape the target
    │   ├── RestoreTargetExists     the target already exists and --clean/--force was not given
    │   ├── RestoreMismatch         the restored data does not match the recorded counts/checksums
    │   └── WalMissing              a WAL file asked for is not in the archive (end of WAL)
    └── Interrupted                 the user pressed Ctrl-C

Lower-level exceptions are mapped at the boundary with ``raise X(...) from exc``. The tree is
mapped once to CLI exit codes (:func:`exit_code_for`: restic's table, plus 2 for a malformed
jobs config file) and once to Airflow semantics (in the provider package). Messages never
contain secrets.

Exit codes: 0 ok, 1 error, 2 malformed config file (nothing executed), 3 partial (a backup
without some unreadable inputs, a restore that skipped damaged items), 10 no repository,
11 locked, 12 wrong password, 130 interrupted.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_NO_REPOSITORY",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_WRONG_PASSWORD",
    "BackupError",
    "ConfigError",
    "DumpFailed",
    "InjectedFault",
    "IntegrityError",
    "Interrupted",
    "InvalidConfigFile",
    "NoRepositoryAvailable",
    "NotFound",
    "PartialBackup",
    "PermanentStorageError",
    "RepositoryError",
    "RepositoryLocked",
    "RepositoryNotFound",
    "RestoreError",
    "RestoreMismatch",
    "RestoreTargetExists",
    "SnapshotNotFound",
    "SourceAuthFailed",
    "SourceError",
    "SourceMissing",
    "SourceUnavailable",
    "StorageError",
    "ToolMissing",
    "TransientStorageError",
    "UnsafePath",
    "ValidationFailed",
    "WalConflict",
    "WalGap",
    "WalMissing",
    "WrongPassword",
    "describe",
    "exit_code_for",
    "first_line",
]

EXIT_OK = 0
EXIT_ERROR = 1
#: A jobs config file (``run``, ``status``, ``drill``, ``runbook``, ``config validate``) is
#: malformed: nothing was executed. Not used by restic, which has no config file.
EXIT_CONFIG = 2
EXIT_PARTIAL = 3
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTERRUPTED = 130


class BackupError(Exception):
    """Base of every error raised by airflow-backup.

    ``exit_code`` is the CLI's exit status for this kind of error; ``retryable`` says whether
    running the same operation again may succeed without changing anything.
    """

    exit_code: int = EXIT_ERROR
    retryable: bool = False


class ConfigError(BackupError):
    """The caller gave invalid input (flags, URLs, config). Fix the input and re-run."""


class SnapshotNotFound(ConfigError):
    """A snapshot selector (``latest``, an id prefix, filters) matched no snapshot."""


class InvalidConfigFile(ConfigError):
    """A jobs config file is malformed. ``problems`` holds one ``dotted.path: message`` line
    per problem; nothing was executed."""

    exit_code = EXIT_CONFIG

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s):\n" + "\n".join(problems))
        self.source = source
        self.problems = problems


class SourceError(BackupError):
    """A data source could not be read or exported."""


class SourceUnavailable(SourceError):
    """The data source is unreachable or missing; a later attempt may succeed."""

    retryable = True


class SourceMissing(SourceError):
    """A file or directory named as a source does not exist. Not retried: waiting does not
    create it (a typo, or data that was never there), so the job fails at once."""


class SourceAuthFailed(SourceError):
    """The data source rejected the user name or password; fix the credentials."""


class ToolMissing(SourceError):
    """A client program the source needs (pg_dump, mariadb-dump, airflow, …) is not installed."""


class DumpFailed(SourceError):
    """The export started but did not complete (the dump program failed); no snapshot saved."""

    retryable = True


class ValidationFailed(SourceError):
    """The stored export failed its readability check (header, table of contents, counts)."""


class PartialBackup(SourceError):
    """The backup completed and a snapshot was saved, but some inputs were unreadable.

    ``snapshot_id`` names the saved snapshot and ``errors`` lists ``(path, reason)`` pairs.
    """

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, snapshot_id: str, errors: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.snapshot_id = snapshot_id
        self.errors = errors


class StorageError(BackupError):
    """The blob store failed."""


class TransientStorageError(StorageError):
    """A storage failure that may go away on retry (timeout, throttling, reset)."""

    retryable = True


class PermanentStorageError(StorageError):
    """A storage failure that retrying cannot fix (permission denied, no space, bad bucket)."""


class NotFound(StorageError):
    """The requested file does not exist in the store."""


class NoRepositoryAvailable(StorageError):
    """Neither the repository nor any of its fallbacks could take the data. It wraps the
    primary's error and keeps what the error tree says of it: retryable when any of the
    repositories failed in a way a retry may fix."""

    def __init__(self, message: str, causes: list[BaseException]) -> None:
        super().__init__(message)
        self.causes = causes
        self.retryable = any(isinstance(c, BackupError) and c.retryable for c in causes)


class InjectedFault(StorageError):
    """The fault injector (:class:`~airflow_backup.storage.faults.FaultInjectingStorage`,
    ``crash_mode=raise``) failed this write on purpose; only tests and drills arm it."""


class RepositoryError(BackupError):
    """The repository cannot be used as asked."""


class RepositoryNotFound(RepositoryError):
    """No repository exists at the given location (no ``config`` file)."""

    exit_code = EXIT_NO_REPOSITORY


class RepositoryLocked(RepositoryError):
    """Another process holds a lock that conflicts with the one requested."""

    exit_code = EXIT_LOCKED
    retryable = True


class WrongPassword(RepositoryError):
    """No key file in the repository opens with the given password."""

    exit_code = EXIT_WRONG_PASSWORD


class IntegrityError(RepositoryError):
    """Stored bytes failed a MAC, hash or structure check. The message names the file."""


class WalConflict(RepositoryError):
    """A WAL file (segment, ``.history``, ``.partial``, ``.backup``) is already archived under
    this name with different content. Never retried and never overwritten: PostgreSQL must
    keep the file and a person must look (two clusters archiving into one place?)."""


class WalGap(RepositoryError):
    """``pg check`` found the WAL archive unable to recover what it should: a base backup
    whose WAL is not all archived, a missing segment between the oldest base backup and the
    newest archived segment, a missing ``.history`` file, or no restorable base backup. Exit
    status 1, like ``check`` finding an error; never retried (waiting does not archive a
    segment PostgreSQL has already recycled): take a new base backup after fixing archiving."""


class RestoreError(BackupError):
    """A restore could not write its target."""


class UnsafePath(RestoreError):
    """A tree node names a path that would escape the restore target."""


class RestoreTargetExists(RestoreError):
    """The restore target (database, table, file, prefix, keys) already exists and the caller
    did not ask to replace it (``--clean``/``--force``/``--on-existing``)."""


class RestoreMismatch(RestoreError):
    """After a restore, row counts or checksums differ from those recorded at backup time."""


class WalMissing(RestoreError):
    """A WAL file asked for by ``restore_command`` is not in the archive. PostgreSQL expects
    this at the end of the archived WAL and when it probes for timeline history files."""


class Interrupted(BackupError):
    """The operation was interrupted by the user (SIGINT)."""

    exit_code = EXIT_INTERRUPTED


def exit_code_for(exc: BaseException) -> int:
    """Given any exception, return the CLI exit status restic would use for it."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BackupError):
        return exc.exit_code
    return EXIT_ERROR


def first_line(exc: BaseException | str | None) -> str:
    """Return the first line of ``exc``'s message (for one-line errors and alerts): of an
    exception with an empty message, its class name; of a string, its first line; of None,
    ""."""
    if exc is None:
        return ""
    text = str(exc)
    if text.strip():
        return text.strip().splitlines()[0]
    return "" if isinstance(exc, str) else type(exc).__name__


def describe(exc: BaseException) -> str:
    """Return ``"ErrorType: first line of the message"`` (for job results and reports)."""
    return f"{type(exc).__name__}: {first_line(exc)}"
