"""``${NAME}`` and ``${NAME:-default}`` interpolation of the string values of a parsed config.

Interpolation runs on parsed YAML (never on its text), so a value cannot inject structure.
``$${`` stands for a literal ``${``. An unset variable without a default is a problem named
by its dotted path; the variable's value never appears in a message (it may be a secret).
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
         problems: list[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
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
                problems: list[str], where: tuple[str | int, ...] = ()) -> Any:
    """Return ``value`` (parsed YAML) with every string interpolated from ``env``; append one
    ``dotted.path: message`` line to ``problems`` per unset variable without a default."""
    if isinstance(value, str):
        return _one(value, env, where, problems)
    if isinstance(value, dict):
        return {k: interpolate(v, env, problems, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, problems, (*where, i)) for i, v in enumerate(value)]
    return value
