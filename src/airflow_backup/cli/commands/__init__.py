"""CLI sub-commands, one module each."""

from types import ModuleType

from airflow_backup.cli.commands import (
    backup,
    cat,
    dump,
    init,
    key,
    ls,
    restore,
    snapshots,
    unlock,
)

ALL_COMMANDS: list[ModuleType] = [
    init, backup, snapshots, ls, restore, dump, cat, key, unlock,
]

__all__ = ["ALL_COMMANDS"]
