"""What every operation returns: a status, what it did, warnings and the error.

Each operation returns a frozen dataclass deriving from :class:`Outcome`. The front ends turn
it into an exit code (:meth:`Outcome.exit_code`), a task state in Airflow, a line of output or
a JSON document (:meth:`Outcome.to_json`), and never decide the status themselves.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TypeVar

from airflow_backup.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupError,
    ConfigError,
    first_line,
)
from airflow_backup.jsontypes import JSONObject, JSONValue

__all__ = ["Failure", "Outcome", "Status", "parse_choice", "to_json_value"]

E = TypeVar("E", bound=enum.Enum)


class Status(enum.StrEnum):
    """How an operation ended.

    ``PARTIAL``: it finished and stored its result, but some inputs were left out (unreadable
    files). ``DEGRADED``: it finished, but not where it should have (a fallback repository).
    """

    SUCCESS = "success"
    PARTIAL = "partial"
    DEGRADED = "degraded"
    FAILED = "failed"

    @property
    def stored(self) -> bool:
        """Return whether a result was stored (everything but FAILED)."""
        return self is not Status.FAILED

    def worst(self, other: Status) -> Status:
        """Return the worse of two statuses (failed > partial > degraded > success)."""
        order = (Status.SUCCESS, Status.DEGRADED, Status.PARTIAL, Status.FAILED)
        return max(self, other, key=order.index)


@dataclass(frozen=True, slots=True)
class Failure:
    """An error as it crosses layers: its kind, its first line, and what the error tree says
    about it (exit code, whether a retry may help). Never holds a secret: engine messages
    never do."""

    error_type: str
    message: str
    exit_code: int = EXIT_ERROR
    retryable: bool = False
    step: str = ""

    @classmethod
    def of(cls, exc: BaseException, step: str = "") -> Failure:
        """Return the failure that describes ``exc`` (raised in ``step``)."""
        if isinstance(exc, BackupError):
            return cls(type(exc).__name__, first_line(exc), exc.exit_code, exc.retryable, step)
        return cls(type(exc).__name__, first_line(exc), EXIT_ERROR, False, step)

    def describe(self) -> str:
        """Return ``"ErrorType: first line"``."""
        return f"{self.error_type}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """Base of every operation's outcome."""

    status: Status = Status.SUCCESS
    duration: float = 0.0
    warnings: tuple[str, ...] = field(default=())
    error: Failure | None = None

    @property
    def ok(self) -> bool:
        """Return whether the operation stored or did what it was asked (not FAILED)."""
        return self.status.stored

    def exit_code(self) -> int:
        """Return the CLI exit status of this outcome: 0 for success and degraded, 3 for
        partial, else the error's (restic's table)."""
        if self.status is Status.FAILED:
            return self.error.exit_code if self.error else EXIT_ERROR
        return EXIT_PARTIAL if self.status is Status.PARTIAL else EXIT_OK

    def to_json(self) -> JSONObject:
        """Return the outcome as a JSON object (enums as their values)."""
        value = to_json_value(self)
        assert isinstance(value, dict)
        return value


def to_json_value(obj: object) -> JSONValue:
    """Return ``obj`` (dataclasses, enums, sequences, mappings, scalars) as a JSON value. A
    dataclass gives its fields, and the properties its ``JSON_PROPERTIES`` names."""
    if isinstance(obj, enum.Enum):
        return to_json_value(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = [f.name for f in dataclasses.fields(obj)]
        names += getattr(obj, "JSON_PROPERTIES", ())
        return {name: to_json_value(getattr(obj, name)) for name in names}
    if isinstance(obj, dict):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json_value(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def parse_choice(kind: type[E], value: str | E, what: str) -> E:
    """Return the member of enum ``kind`` whose value is ``value``. Raise ConfigError naming
    ``what`` and the allowed values for anything else."""
    if isinstance(value, kind):
        return value
    for member in kind:
        if member.value == value:
            return member
    allowed = ", ".join(str(m.value) for m in kind)
    raise ConfigError(f"invalid {what} {value!r}: use one of {allowed}")
