"""Read the jobs config file: YAML, ``${ENV}`` interpolation, validation, one line a problem.

:func:`load_config` reads a file, interpolates ``${ENV}`` / ``${ENV:-default}`` in string values
(:mod:`airflow_backup.jobs.interpolate`), validates it with the models of
:mod:`airflow_backup.jobs.config` and cross-checks names. Every problem becomes one line
``dotted.path: message``; if there is any, InvalidConfigFile (exit 2) is raised and nothing runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_backup.errors import InvalidConfigFile
from airflow_backup.jobs.config import NAME_RE, Config
from airflow_backup.jobs.interpolate import interpolate

__all__ = ["LoadedConfig", "load_config", "load_config_isolated", "parse_config"]

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
        if not NAME_RE.match(name):
            problems.append(f"repositories.{name}: invalid name (letters, digits, _ . -)")
        for i, fb in enumerate(repo.fallbacks):
            if fb not in cfg.repositories:
                problems.append(f"repositories.{name}.fallbacks.{i}: unknown repository {fb!r}")
            elif fb == name:
                problems.append(f"repositories.{name}.fallbacks.{i}: a repository cannot be "
                                "its own fallback")
    for name, job in cfg.jobs.items():
        if not NAME_RE.match(name):
            problems.append(f"jobs.{name}: invalid name (letters, digits, _ . -)")
        if job.repository not in cfg.repositories:
            known = ", ".join(sorted(cfg.repositories))
            problems.append(f"jobs.{name}.repository: unknown repository {job.repository!r} "
                            f"(known: {known})")
        for i, target in enumerate(job.copy_to):
            if target not in cfg.repositories:
                problems.append(f"jobs.{name}.copy_to.{i}: unknown repository {target!r}")
            elif target == job.repository:
                problems.append(f"jobs.{name}.copy_to.{i}: the job's own repository cannot "
                                "be a copy target")
    return problems


def parse_config(data: Any, source: str = "<config>",
                 env: Mapping[str, str] | None = None, *, lazy: bool = False) -> Config:
    """Given parsed YAML, return the validated Config. Raise InvalidConfigFile listing every
    problem as ``dotted.path: message``. ``lazy`` leaves unset ``${VAR}`` references as
    written (:mod:`.interpolate`) and names them only if the config is then invalid."""
    if not isinstance(data, dict):
        raise InvalidConfigFile(source, ["<root>: must be a mapping with 'repositories' "
                                         "and 'jobs'"])
    problems: list[str] = []
    kept: list[str] | None = [] if lazy else None
    data = interpolate(data, os.environ if env is None else env, problems, kept=kept)
    if problems:  # an unset variable would only cause follow-on errors
        raise InvalidConfigFile(source, problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems += [f"{_dotted(tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]
        raise InvalidConfigFile(source, [*(kept or ()), *problems]) from None
    problems += _cross_check(cfg)
    if problems:
        raise InvalidConfigFile(source, [*(kept or ()), *problems])
    return cfg


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false (so ``on:``, ``yes`` and ``no`` stay strings)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _read(name: str) -> Any:
    """Return the parsed YAML of file ``name``. Raise InvalidConfigFile."""
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
    return data


def load_config(path: str | os.PathLike[str],
                env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the config file at ``path``. Raise InvalidConfigFile."""
    name = os.fspath(path)
    return parse_config(_read(name), name, env)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A config with its broken jobs left out: ``broken`` maps each left-out part
    (``jobs.NAME``, or ``repositories.NAME`` for an invalid repository no valid job uses) to
    its problems (``dotted.path: message`` lines, as InvalidConfigFile lists them)."""

    path: str
    config: Config
    broken: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def require(self, job: str) -> Config:
        """Return the config if ``job`` is one of its valid jobs. Raise InvalidConfigFile
        with the job's problems if it was left out, ConfigError if there is no such job."""
        if f"jobs.{job}" in self.broken:
            raise InvalidConfigFile(self.path, list(self.broken[f"jobs.{job}"]))
        if job not in self.config.jobs:
            from airflow_backup.errors import ConfigError

            raise ConfigError(f"unknown job(s): {job} (jobs: {', '.join(self.config.jobs)})")
        return self.config


def _repositories_of(job: Any, repositories: Mapping[str, Any]) -> dict[str, Any]:
    """Return the raw repositories ``job`` (raw YAML) stores into: its repository and,
    transitively, their fallbacks (unknown names are left for validation to report)."""
    name = job.get("repository") if isinstance(job, dict) else None
    todo, out = [name] if isinstance(name, str) else [], {}
    while todo:
        name = todo.pop()
        if name in out or name not in repositories:
            continue
        out[name] = repositories[name]
        body = repositories[name]
        fallbacks = body.get("fallbacks") if isinstance(body, dict) else None
        if isinstance(fallbacks, list):
            todo += [f for f in fallbacks if isinstance(f, str)]
    return out


def load_config_isolated(path: str | os.PathLike[str],
                         env: Mapping[str, str] | None = None, *,
                         lazy: bool = False) -> LoadedConfig:
    """Read the config file at ``path`` like :func:`load_config`, but leave out each job
    that is invalid on its own (its keys, its sources, the repositories it stores into)
    instead of refusing the whole file, so that one broken job does not stop the others.
    ``lazy``: see :func:`parse_config`. Raise InvalidConfigFile if the file cannot be read,
    its top level is invalid, or no job is valid."""
    name = os.fspath(path)
    data = _read(name)
    try:
        return LoadedConfig(name, parse_config(data, name, env, lazy=lazy))
    except InvalidConfigFile as whole:
        jobs, repositories = (data.get("jobs"), data.get("repositories")) \
            if isinstance(data, dict) else (None, None)
        if not isinstance(jobs, dict) or not jobs or not isinstance(repositories, dict):
            raise
        good: dict[str, Any] = {}
        broken: dict[str, tuple[str, ...]] = {}
        for job, body in jobs.items():
            alone = {**data, "jobs": {job: body},
                     "repositories": _repositories_of(body, repositories) or repositories}
            try:
                parse_config(alone, name, env, lazy=lazy)
            except InvalidConfigFile as exc:
                broken[f"jobs.{job}"] = tuple(exc.problems)
            else:
                good[job] = body
        if not good:
            raise whole from None
        used: dict[str, Any] = {}
        for body in good.values():
            used.update(_repositories_of(body, repositories))
        config = parse_config({**data, "jobs": good, "repositories": used}, name, env, lazy=lazy)
        wanted: dict[str, Any] = {}
        for body in jobs.values():
            wanted.update(_repositories_of(body, repositories))
        for repo in repositories:
            if repo in wanted:  # its problems are its jobs' problems
                continue
            # An unused repository is checked with a stand-in job that stores into it.
            probe = {"sources": ["/"], "repository": repo}
            try:
                parse_config({**data, "jobs": {"probe": probe}, "repositories":
                              _repositories_of(probe, repositories)}, name, env, lazy=lazy)
            except InvalidConfigFile as exc:
                broken[f"repositories.{repo}"] = tuple(
                    p for p in exc.problems if p.startswith("repositories."))
        return LoadedConfig(name, config, broken)
