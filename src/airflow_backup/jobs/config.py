"""The jobs config file: repositories and backup jobs in one YAML document.

:func:`load_config` reads a file, interpolates ``${ENV}`` / ``${ENV:-default}`` in string values
(:mod:`airflow_backup.jobs.interpolate`), validates it with the pydantic models below (unknown
keys are rejected everywhere) and cross-checks names. Every problem becomes one line
``dotted.path: message``; if there is any, InvalidConfigFile (exit 2) is raised and nothing runs.

Secrets are only referenced (``password_file``, ``password_env``, ``password_command``), never
written inline; the models hold no secret values, so dumping a config is safe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_backup.errors import InvalidConfigFile
from airflow_backup.jobs.interpolate import interpolate

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
    "load_config",
    "parse_config",
    "parse_seconds",
]

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_RESTIC_DURATION_RE = re.compile(r"^(\d+[ymdh])+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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

    url: str = Field(min_length=1, description="path, local:PATH, s3://BUCKET/PREFIX, …")
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
    maintenance: MaintenanceConfig = Field(
        default_factory=lambda: MaintenanceConfig.model_validate({}),
        description="scheduled check and prune (Airflow maintenance DAG)")

    @field_validator("lock_wait", mode="before")
    @classmethod
    def _lock_wait(cls, v: Any) -> float:
        return parse_seconds(v)

    @model_validator(mode="after")
    def _one_password_source(self) -> RepositoryConfig:
        given = [n for n in ("password_file", "password_env", "password_command")
                 if getattr(self, n)]
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


Event = Literal["failure", "degraded", "success", "rpo_breach", "drill_failure", "drill_success"]


_DEFAULT_EVENTS: tuple[Event, ...] = ("failure", "degraded", "rpo_breach", "drill_failure")


class NotificationConfig(_Model):
    """Where alerts go (Apprise URLs) and for which outcomes."""

    urls: list[str] = Field(default_factory=list,
                            description="Apprise URLs: mailto://, slack://, msteams://, "
                                        "pagerduty://, ntfy://, json://, …")
    on: list[Event] = Field(default_factory=lambda: list(_DEFAULT_EVENTS),
                            description="outcomes that send a message")


class FileHash(_Model):
    """A file whose restored content must have this SHA-256."""

    path: str = Field(description="absolute path as backed up")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="expected SHA-256, hex")


class SqlAssertion(_Model):
    """A query run against the restored scratch database; its first column of the first row
    must equal ``expect`` (compared as text)."""

    query: str = Field(min_length=1, description="SQL returning one value")
    expect: str | int | float = Field(description="expected value")


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
    compare_recorded: bool = Field(True, description="compare row counts and checksums with "
                                                     "those recorded at backup time")
    sql: list[SqlAssertion] = Field(default_factory=list, description="custom SQL assertions")
    files: list[FileHash] = Field(default_factory=list, description="file hashes to check")

    @field_validator("max_rto", mode="before")
    @classmethod
    def _rto(cls, v: Any) -> float:
        return parse_seconds(v)


class Job(_Model):
    """A backup job: what, where, when, how long to keep, how to verify, whom to tell."""

    description: str = Field("", description="free text shown in runbooks and messages")
    sources: list[str] = Field(min_length=1, description="paths, or source URLs "
                                                         "(postgresql://, mysql://, sqlite:///…)")
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
    tags: list[str] = Field(default_factory=list, description="extra snapshot tags")

    @field_validator("rpo", mode="before")
    @classmethod
    def _rpo(cls, v: Any) -> float | None:
        return None if v is None else parse_seconds(v)

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        for s in v:
            if not s.strip():
                raise ValueError("a source must not be empty")
            if "://" in s and "@" in s.split("://", 1)[1].split("/", 1)[0] \
                    and ":" in s.split("://", 1)[1].split("@", 1)[0]:
                raise ValueError("a source URL must not contain a password: use the "
                                 "AIRFLOW_BACKUP_SOURCE_PASSWORD(_FILE) environment or a passfile")
        return v


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


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _message(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    loc = tuple(err.get("loc") or ())
    if kind == "extra_forbidden" and loc and str(loc[-1]).lower() in ("password", "secret",
                                                                      "token"):
        return ("secrets are not allowed inline: use password_file, password_env or "
                "password_command")
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "greater_than_equal":
        return f"must be ≥ {ctx.get('ge')}"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"must be ≤ {ctx.get('le')}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length", 1) == 1 \
            else f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, ")
    return str(err.get("msg", kind))


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _cross_check(cfg: Config) -> list[str]:
    problems: list[str] = []
    for name, repo in cfg.repositories.items():
        if not _NAME_RE.match(name):
            problems.append(f"repositories.{name}: invalid name (letters, digits, _ . -)")
        for i, fb in enumerate(repo.fallbacks):
            if fb not in cfg.repositories:
                problems.append(f"repositories.{name}.fallbacks.{i}: unknown repository {fb!r}")
            elif fb == name:
                problems.append(f"repositories.{name}.fallbacks.{i}: a repository cannot be "
                                "its own fallback")
    for name, job in cfg.jobs.items():
        if not _NAME_RE.match(name):
            problems.append(f"jobs.{name}: invalid name (letters, digits, _ . -)")
        if job.repository not in cfg.repositories:
            known = ", ".join(sorted(cfg.repositories))
            problems.append(f"jobs.{name}.repository: unknown repository {job.repository!r} "
                            f"(known: {known})")
    return problems


def parse_config(data: Any, source: str = "<config>",
                 env: Mapping[str, str] | None = None) -> Config:
    """Given parsed YAML, return the validated Config. Raise InvalidConfigFile listing every
    problem as ``dotted.path: message``."""
    if not isinstance(data, dict):
        raise InvalidConfigFile(source, ["<root>: must be a mapping with 'repositories' "
                                         "and 'jobs'"])
    problems: list[str] = []
    data = interpolate(data, os.environ if env is None else env, problems)
    if problems:  # an unset variable would only cause follow-on errors
        raise InvalidConfigFile(source, problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems += [f"{_dotted(tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]
        raise InvalidConfigFile(source, problems) from None
    problems += _cross_check(cfg)
    if problems:
        raise InvalidConfigFile(source, problems)
    return cfg


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false (so ``on:``, ``yes`` and ``no`` stay strings)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_config(path: str | os.PathLike[str],
                env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the config file at ``path``. Raise InvalidConfigFile."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)  # a SafeLoader subclass
    except OSError as exc:
        raise InvalidConfigFile(name, [f"<file>: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidConfigFile(name, [f"{where}: invalid YAML: {problem}"]) from None
    return parse_config(data, name, env)
