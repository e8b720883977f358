"""``${NAME}`` and ``${NAME:-default}`` interpolation of the string values of a parsed config.

Interpolation runs on parsed YAML (never on its text), so a value cannot inject structure.
``$${`` stands for a literal ``${``. An unset variable without a default is a problem named
by its dotted path; the variable's value never appears in a message (it may be a secret).
Lazily (the Airflow DAG processor, which builds DAGs but runs no step), an unset variable is
left as written and only reported if the value then fails validation: the workers, which
read the config again when a task runs, are where it must be set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["interpolate"]

_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _path(parts: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


def _one(text: str, env: Mapping[str, str], where: tuple[str | int, ...],
         problems: list[str], kept: list[str] | None) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None and kept is not None:
                kept.append(f"{_path(where)}: environment variable {name} is not set")
                return m.group(0)
            if default is None:
                problems.append(f"{_path(where)}: environment variable {name} is not set "
                                f"(use ${{{name}:-default}} for a default)")
                return ""
            return default
        return value

    if "${" in text and not _PATTERN.search(text):
        problems.append(f"{_path(where)}: malformed ${{...}} reference")
        return text
    return _PATTERN.sub(sub, text)


def interpolate(value: Any, env: Mapping[str, str],
                problems: list[str], where: tuple[str | int, ...] = (),
                kept: list[str] | None = None) -> Any:
    """Return ``value`` (parsed YAML) with every string interpolated from ``env``; append one
    ``dotted.path: message`` line to ``problems`` per unset variable without a default. Given
    ``kept`` (lazy), such a reference is left as written and its line goes to ``kept``
    instead."""
    if isinstance(value, str):
        return _one(value, env, where, problems, kept)
    if isinstance(value, dict):
        return {k: interpolate(v, env, problems, (*where, str(k)), kept)
                for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, problems, (*where, i), kept) for i, v in enumerate(value)]
    return value
