"""CLI sub-commands, one module each.

A module imports at its top only what its parser needs and what repository commands share;
the job commands load the config models (pydantic, YAML) inside their ``run``. When
:func:`airflow_backup.cli.main.main` can tell which command a command line runs, it imports
that command's module alone (:func:`command_module`): the others' imports (verification,
restore, PITR, …) took about as long as the running command's own. ``ALL_COMMANDS`` imports
every module, for the full parser (help, a mistyped command, completion and man pages).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Each sub-command's name -> the module of this package that registers it, in the order
#: of the help's command list.
COMMAND_MODULES: dict[str, str] = {
    "init": "init", "backup": "backup", "snapshots": "snapshots", "ls": "ls",
    "restore": "restore", "dump": "dump", "diff": "diff", "forget": "forget",
    "prune": "prune", "check": "check", "repair": "repair", "stats": "stats", "tag": "tag",
    "copy": "copy", "unlock": "unlock", "cat": "cat", "list": "list_cmd", "find": "find",
    "key": "key", "config": "config", "run": "run", "status": "status", "drill": "drill",
    "runbook": "runbook", "pg": "pg", "version": "version", "generate": "generate",
}

__all__ = ["ALL_COMMANDS", "COMMAND_MODULES", "command_module"]


def command_module(name: str) -> ModuleType:
    """Return (importing it) the module that registers the sub-command ``name``. Raise
    KeyError for an unknown name."""
    return importlib.import_module(f"{__name__}.{COMMAND_MODULES[name]}")


def __getattr__(name: str) -> list[ModuleType]:
    # ALL_COMMANDS: every command module, imported on first use (PEP 562).
    if name == "ALL_COMMANDS":
        return [command_module(c) for c in COMMAND_MODULES]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
