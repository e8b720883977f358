"""The exception tree's helpers: one-line messages and exit codes."""

from __future__ import annotations

from airflow_backup.errors import (
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    IntegrityError,
    RepositoryLocked,
    describe,
    exit_code_for,
    first_line,
)


def test_first_line_of_exceptions_strings_and_none() -> None:
    assert first_line(IntegrityError("pack 1a2b: MAC failed\ndetails")) == "pack 1a2b: MAC failed"
    assert first_line(ValueError()) == "ValueError"
    assert first_line("\nboom\nmore") == "boom"
    assert first_line("") == "" and first_line(None) == ""


def test_describe_names_the_type_and_the_first_line() -> None:
    assert describe(OSError("disk full\nerrno 28")) == "OSError: disk full"


def test_exit_codes() -> None:
    assert exit_code_for(RepositoryLocked("x")) == EXIT_LOCKED
    assert exit_code_for(KeyboardInterrupt()) == EXIT_INTERRUPTED
    assert exit_code_for(RuntimeError("x")) == 1
