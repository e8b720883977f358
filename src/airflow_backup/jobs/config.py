"""The jobs config file's schema: repositories and backup jobs in one YAML document.

These pydantic models reject unknown keys everywhere; :mod:`airflow_backup.jobs.load` reads a
file into them (``${ENV}`` interpolation, one line per problem, exit 2).

Secrets are only referenced (``password_file``, ``password_env``, ``password_command``), never
written inline; the models hold no secret values, so dumping a config is safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_backup.errors import ConfigError
from airflow_backup.redact import is_secret_option, split_userinfo

__all__ = [
    "Config",
    "DrillConfig",
    "FileHash",
    "Job",
    "NotificationConfig",
    "RepositoryConfig",
    "RetentionConfig",
    "RetryConfig",
    "ScheduleConfig",
    "SqlAssertion",
    "VerificationConfig",
    "WatchConfig",
    "parse_seconds",
]

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_RESTIC_DURATION_RE = re.compile(r"^(\d+[ymdh])+$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # repository and job names


def parse_seconds(value: str | float | int) -> float:
    """Return a duration in seconds from a number or ``90s``, ``15m``, ``36h``, ``7d``, ``2w``.
    Raise ValueError for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must be ≥ 0")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"invalid duration {value!r}: use seconds or e.g. 90s, 15m, 36h, 7d")
    return float(m.group(1)) * _SECONDS[m.group(2) or "s"]


def _accepted(parse: Callable[[str], object], v: str) -> str:
    """Return ``v`` if the engine's ``parse`` accepts it; its ConfigError becomes the
    ValueError pydantic reports."""
    from airflow_backup.errors import ConfigError
    try:
        parse(v)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return v


def _valid_subset(v: str) -> str:
    if not v:
        return v
    from airflow_backup.repository.check import parse_subset
    return _accepted(parse_subset, v)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Model):
    """Retries of a whole job attempt: exponential backoff with jitter."""

    attempts: int = Field(3, ge=1, le=100, description="tries in all, the first included")
    initial_delay: float = Field(5.0, ge=0, description="seconds before the second try")
    multiplier: float = Field(2.0, ge=1, description="delay growth factor per try")
    max_delay: float = Field(300.0, ge=0, description="upper bound of one delay, seconds")
    jitter: float = Field(1.0, ge=0, description="random seconds (0..jitter) added to a delay")


class StorageRetryConfig(_Model):
    """Retries of single storage operations (the RetryingStorage wrapper)."""

    attempts: int = Field(10, ge=1, description="tries per storage operation")
    base_delay: float = Field(0.5, ge=0, description="first backoff delay, seconds")
    max_delay: float = Field(30.0, ge=0, description="largest backoff delay, seconds")
    max_time: float = Field(300.0, gt=0, description="time budget per operation, seconds")


class MaintenanceConfig(_Model):
    """Repository upkeep, run by the Airflow provider's ``maintenance__<repository>`` DAG."""

    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(cron="0 4 * * 0", timezone="UTC", window=None),
        description="when maintenance runs (default Sundays 04:00 UTC)")
    check_subset: str = Field("5%", description="'check --read-data-subset' of each run: "
                                                "'n/t', 'x%' or a size; '' checks structure only")
    prune: bool = Field(True, description="prune unreferenced data after the check")
    max_unused: str = Field("5%", description="unused space prune may leave: 'x%' or a size")

    @field_validator("check_subset")
    @classmethod
    def _subset(cls, v: str) -> str:
        return _valid_subset(v)

    @field_validator("max_unused")
    @classmethod
    def _unused(cls, v: str) -> str:
        from airflow_backup.repository.prune import unused_limit
        return _accepted(unused_limit, v)


class RepositoryConfig(_Model):
    """A repository: where it is, how its password is found, what to use if it fails."""

    url: str = Field("", description="path, local:PATH, s3://BUCKET/PREFIX, … (or connection)")
    connection: str = Field("", description="an Airflow connection (type backup_repository) "
                            "that defines the repository instead of url and password_*: URL, "
                            "password, aws_conn_id/gcp_conn_id/wasb_conn_id (storage "
                            "credentials of s3://, gs://, az://), retry; read through Airflow "
                            "(any secrets backend) in DAGs, from AIRFLOW_CONN_<ID> by the CLI")
    password_file: str | None = Field(None, description="file holding the password")
    password_env: str | None = Field(None, description="environment variable with the password")
    password_command: str | None = Field(
        None, description="command printing the password (run without a shell)")
    retry: StorageRetryConfig = Field(default_factory=lambda: StorageRetryConfig.model_validate({}),
                                      description="storage retry policy")
    fallbacks: list[str] = Field(default_factory=list,
                                 description="names of repositories to use, in order, if this "
                                             "one cannot take a backup")
    lock_wait: float = Field(300.0, ge=0, description="how long a job step waits for a lock "
                             "another process holds (restic's --retry-lock), seconds or 5m")
    limit_upload: int = Field(0, ge=0, description="upload limit in KiB/s (restic's "
                              "--limit-upload); 0: unlimited")
    limit_download: int = Field(0, ge=0, description="download limit in KiB/s (restic's "
                                "--limit-download); 0: unlimited")
    maintenance: MaintenanceConfig = Field(
        default_factory=lambda: MaintenanceConfig.model_validate({}),
        description="scheduled check and prune (Airflow maintenance DAG)")

    @field_validator("lock_wait", mode="before")
    @classmethod
    def _lock_wait(cls, v: Any) -> float:
        return parse_seconds(v)

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        # The URL is shown in runbooks, alerts and status: credentials belong in the
        # environment or the provider's own configuration. A user name alone (sftp) is fine.
        base, _, query = v.partition("?")
        options = parse_qsl(query, keep_blank_values=True)
        _refuse_secret_options("repository", (k for k, _ in options),
                               "use the environment or the provider's configuration")
        for part in [base, *(u for _, u in options if "://" in u)]:
            if ":" in split_userinfo(part)[0]:
                raise ValueError("a repository URL must not contain a password: use the "
                                 "environment (AWS_*, …) or the provider's configuration")
        return v

    @model_validator(mode="after")
    def _one_password_source(self) -> RepositoryConfig:
        given = [n for n in ("password_file", "password_env", "password_command")
                 if getattr(self, n)]
        if self.connection:
            if self.url or given:
                raise ValueError("with connection, the connection defines the repository: "
                                 "leave out " + ", ".join(["url"] * bool(self.url) + given))
            return self
        if not self.url:
            raise ValueError("give url (and a password source) or connection")
        if len(given) != 1:
            raise ValueError("give exactly one of password_file, password_env, password_command"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class ScheduleConfig(_Model):
    """When the job runs (used by the Airflow provider and shown in runbooks)."""

    cron: str = Field(description="cron expression, e.g. '0 2 * * *'")
    timezone: str = Field("UTC", description="IANA time zone of the cron expression")
    window: float | None = Field(None, gt=0, description="longest a run may take, seconds or "
                                 "30m/2h; the Airflow DAG raises a deadline alert (the job's "
                                 "failure notification) when a run overruns it")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float | None:
        return None if v is None else parse_seconds(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"invalid cron expression {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class RetentionConfig(_Model):
    """restic's ``forget`` policy for the job's snapshots (drill records are never removed)."""

    keep_last: int = Field(0, ge=0, description="keep the newest N snapshots")
    keep_hourly: int = Field(0, ge=0, description="keep the last snapshot of N hours")
    keep_daily: int = Field(0, ge=0, description="keep the last snapshot of N days")
    keep_weekly: int = Field(0, ge=0, description="keep the last snapshot of N weeks")
    keep_monthly: int = Field(0, ge=0, description="keep the last snapshot of N months")
    keep_yearly: int = Field(0, ge=0, description="keep the last snapshot of N years")
    keep_within: str = Field("", description="keep all snapshots within this duration of the "
                                             "newest (restic syntax: 1y2m3d4h)")
    keep_tag: list[str] = Field(default_factory=list, description="keep snapshots with a tag")
    prune: bool = Field(False, description="prune unreferenced data after forgetting")

    @field_validator("keep_within")
    @classmethod
    def _within(cls, v: str) -> str:
        if v and not _RESTIC_DURATION_RE.match(v):
            raise ValueError(f"invalid duration {v!r}: use restic's form, e.g. 7d or 1y6m")
        return v

    def is_empty(self) -> bool:
        """Return whether no keep rule is set (then retention removes nothing)."""
        return not (self.keep_last or self.keep_hourly or self.keep_daily or self.keep_weekly
                    or self.keep_monthly or self.keep_yearly or self.keep_within
                    or self.keep_tag)


class VerificationConfig(_Model):
    """How a new snapshot is verified after it is stored."""

    read_back: bool = Field(True, description="walk the new snapshot and confirm every blob it "
                                              "references is indexed and its packs exist")
    check_subset: str = Field("", description="also run 'check --read-data-subset' with this "
                                              "subset (n/t, x% or a size); empty: no")

    @field_validator("check_subset")
    @classmethod
    def _subset(cls, v: str) -> str:
        return _valid_subset(v)


Event = Literal["failure", "degraded", "partial", "success", "rpo_breach", "drill_failure",
                "drill_success", "drill_stale", "config_error"]


_DEFAULT_EVENTS: tuple[Event, ...] = ("failure", "degraded", "partial", "rpo_breach",
                                      "drill_failure", "drill_stale", "config_error")

#: In Airflow, a partial or degraded backup either fails the job's last task (red, the
#: failure alert goes out) or succeeds with a warning and that status in its XCom.
Incomplete = Literal["fail", "warn"]


class NotificationConfig(_Model):
    """Where alerts go (Apprise URLs) and for which outcomes."""

    urls: list[str] = Field(default_factory=list,
                            description="Apprise URLs: mailto://, slack://, msteams://, "
                                        "pagerduty://, ntfy://, json://, …")
    connection: str = Field("", description="an Airflow connection whose extra 'urls' (or "
                            "host) holds more Apprise URLs: tokens stay in Airflow or its "
                            "secrets backend (the CLI reads AIRFLOW_CONN_<ID>)")
    on: list[Event] = Field(default_factory=lambda: list(_DEFAULT_EVENTS),
                            description="outcomes that send a message")

    def all_urls(self) -> list[str]:
        """Return ``urls`` and those of ``connection``. Raise ConfigError if the connection
        cannot be read."""
        if not self.connection:
            return list(self.urls)
        from airflow_backup.connections import apprise_urls, get_connection

        return [*self.urls, *apprise_urls(get_connection(self.connection))]


class FileHash(_Model):
    """A file whose restored content must have this SHA-256."""

    path: str = Field(description="absolute path as backed up")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="expected SHA-256, hex")


class SqlAssertion(_Model):
    """A query run against the restored scratch database; its first column of the first row
    must equal ``expect`` (compared as text)."""

    query: str = Field(min_length=1, description="SQL returning one value")
    expect: str | int | float = Field(description="expected value")


def _refuse_secret_options(what: str, names: Iterable[str], remedy: str) -> None:
    """Raise ValueError naming the query options among ``names`` that may carry a
    credential (their names only: the message is printed)."""
    secret = sorted({k for k in names if is_secret_option(k)})
    if secret:
        raise ValueError(f"a {what} URL must not carry credentials (query option(s) "
                         f"{', '.join(secret)}): {remedy}")


def _check_source_url(text: str) -> None:
    """Raise ValueError if ``text`` is a source URL that cannot be read, holds a password or
    has a query option that may hold a credential. The messages name options, never values:
    they are printed, and a password in a malformed URL is what the parser trips on."""
    if "://" not in text or text.startswith("file://"):
        return
    from airflow_backup.sources.base import SourceURL  # the engine, only for URL sources

    try:
        url = SourceURL.parse(text, allow_password=True)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if url.password:
        raise ValueError("a source URL must not contain a password: use the "
                         "AIRFLOW_BACKUP_SOURCE_PASSWORD(_FILE) environment or a passfile")
    _refuse_secret_options("source", (k for k, _ in url.query),
                           "use the environment or a passfile")
    from airflow_backup.sources.registry import check_options

    try:
        check_options(url)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class DrillConfig(_Model):
    """A restore drill: restore into a sandbox, validate, measure the RTO."""

    schedule: ScheduleConfig | None = Field(None, description="when drills run; without it, "
                                            "the Airflow drill DAG runs after every backup")
    after_backup: bool = Field(False, description="with a schedule, also drill after every "
                                                  "backup (Airflow: Asset or time)")
    target: str = Field("", description="database server URL for scratch databases "
                                        "(e.g. postgresql://postgres@127.0.0.1:5432/); files "
                                        "always go to a temporary directory")
    max_rto: float = Field(3600.0, gt=0, description="longest acceptable restore, seconds or "
                                                     "15m/1h")
    max_age: float | None = Field(None, gt=0, description="longest time since the last drill, "
                                  "seconds or 8d; past it the job's drill is stale (status "
                                  "exits 1, the status watch sends drill_stale)")
    compare_recorded: bool = Field(True, description="compare row counts and checksums with "
                                                     "those recorded at backup time")
    sql: list[SqlAssertion] = Field(default_factory=list, description="custom SQL assertions "
                                    "(a postgresql+pitr:// source: run on the recovered "
                                    "scratch server, in the source's first database)")
    files: list[FileHash] = Field(default_factory=list, description="file hashes to check")
    pitr_within: float | None = Field(
        None, gt=0, description="postgresql+pitr:// sources: draw the recovery target time "
        "from the last DURATION (seconds or 6h/2d) of the recoverable window; default: "
        "between the newest restorable base backup's stop time and the newest archived WAL")

    @field_validator("pitr_within", mode="before")
    @classmethod
    def _pitr_within(cls, v: Any) -> float | None:
        return None if v is None else parse_seconds(v)

    @field_validator("max_rto", mode="before")
    @classmethod
    def _rto(cls, v: Any) -> float:
        return parse_seconds(v)

    @field_validator("max_age", mode="before")
    @classmethod
    def _max_age(cls, v: Any) -> float | None:
        return None if v is None else parse_seconds(v)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if v:
            _check_source_url(v)
        return v


class Job(_Model):
    """A backup job: what, where, when, how long to keep, how to verify, whom to tell."""

    description: str = Field("", description="free text shown in runbooks and messages")
    sources: list[str] = Field(min_length=1, description="paths, or source URLs "
                               "(postgresql://, mysql://, sqlite:///…; "
                               "postgresql+pitr://user@host:port for base backups of a "
                               "server whose archive_command archives WAL into the job's "
                               "repository)")
    repository: str = Field(description="name of an entry of 'repositories'")
    schedule: ScheduleConfig | None = Field(None, description="cron and time zone")
    retention: RetentionConfig = Field(default_factory=lambda: RetentionConfig.model_validate({}),
                                       description="restic keep_* policy")
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig.model_validate({}),
                               description="retries of the whole job")
    verification: VerificationConfig = Field(
        default_factory=lambda: VerificationConfig.model_validate({}),
        description="after-store verification")
    notifications: NotificationConfig = Field(
        default_factory=lambda: NotificationConfig.model_validate({}), description="alerts")
    rpo: float | None = Field(None, gt=0, description="maximum age of the last good backup, "
                                                      "seconds or 36h/7d")
    drill: DrillConfig | None = Field(None, description="restore drill settings")
    excludes: list[str] = Field(default_factory=list, description="exclude patterns for paths")
    iexcludes: list[str] = Field(default_factory=list, description="exclude patterns for "
                                 "paths, ignoring case (restic --iexclude)")
    exclude_caches: bool = Field(False, description="leave out the contents of directories "
                                 "holding a valid CACHEDIR.TAG (restic --exclude-caches)")
    exclude_if_present: list[str] = Field(
        default_factory=list, description="leave out the contents of directories holding "
        "this file, 'NAME' or 'NAME:HEADER' (restic --exclude-if-present)")
    exclude_larger_than: str | None = Field(
        None, description="leave out files larger than this size, e.g. 512K, 100M, 2G "
        "(restic --exclude-larger-than)")
    one_file_system: bool = Field(False, description="do not cross file system boundaries "
                                  "(restic --one-file-system)")
    tags: list[str] = Field(default_factory=list, description="extra snapshot tags")
    copy_to: list[str] = Field(
        default_factory=list, description="repositories (names of 'repositories' entries) "
        "that receive a copy of the job's snapshots after each backup (restic copy: the "
        "offsite copy; a target that missed a run catches up at the next)")
    on_incomplete: Incomplete = Field(
        "fail", description="Airflow: a partial (unreadable files) or degraded (fallback "
        "repository) backup fails the DAG run's last task ('fail', default) or succeeds "
        "with a warning and status partial/degraded in its XCom ('warn')")

    @field_validator("rpo", mode="before")
    @classmethod
    def _rpo(cls, v: Any) -> float | None:
        return None if v is None else parse_seconds(v)

    @field_validator("exclude_larger_than", mode="before")
    @classmethod
    def _size(cls, v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # YAML reads a plain byte count as a number
        if not isinstance(v, str):
            raise ValueError("must be a size such as 512K, 100M or 2G")
        from airflow_backup.archiver.exclude import parse_size
        return _accepted(parse_size, v) if v else None

    @field_validator("exclude_if_present")
    @classmethod
    def _tag_specs(cls, v: list[str]) -> list[str]:
        from airflow_backup.archiver.exclude import parse_tag_spec
        return [_accepted(parse_tag_spec, spec) for spec in v]

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        for s in v:
            if not s.strip():
                raise ValueError("a source must not be empty")
            _check_source_url(s)
        if len(v) > 1 and any(s.lower().startswith("postgresql+pitr://") for s in v):
            raise ValueError("a postgresql+pitr:// source must be its job's only source (its "
                             "repository holds the WAL archive of that one server)")
        return v

    @model_validator(mode="after")
    def _pitr_retention(self) -> Job:
        if any(s.lower().startswith("postgresql+pitr://") for s in self.sources):
            r = self.retention
            other = [k for k in ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
                                 "keep_yearly", "keep_tag") if getattr(r, k)]
            if other:
                raise ValueError("retention of a postgresql+pitr:// job keeps the newest "
                                 "keep_last base backups and/or those within keep_within, "
                                 "and the WAL they need; not " + ", ".join(other))
        return self


class WatchConfig(_Model):
    """When the status watch runs: it checks every job's RPO and drill age, and the config."""

    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig.model_validate({"cron": "*/10 * * * *"}),
        description="cron of the status__<config> DAG (default every 10 minutes)")


class Config(_Model):
    """The whole file."""

    version: Literal[1] = Field(1, description="config format version")
    repositories: dict[str, RepositoryConfig] = Field(min_length=1,
                                                      description="name -> repository")
    jobs: dict[str, Job] = Field(min_length=1, description="name -> job")
    metrics_file: str | None = Field(None, description="Prometheus textfile-collector file "
                                                       "written after each run/status/drill")
    runbook: str = Field("", description="where the runbook is published (URL or path); shown "
                                         "in alerts")
    notifications: NotificationConfig | None = Field(
        None, description="alerts about the config itself (config_error: a job left out of "
        "Airflow because it is invalid); without it they go to every valid job's URLs")
    watch: WatchConfig = Field(default_factory=lambda: WatchConfig.model_validate({}),
                               description="the status watch (Airflow DAG status__<config>): "
                                           "RPO, drill age and config errors")
