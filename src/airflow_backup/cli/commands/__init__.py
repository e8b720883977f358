"""CLI sub-commands, one module each."""

from types import ModuleType

from airflow_backup.cli.commands import (
    backup,
    cat,
    check,
    diff,
    dump,
    forget,
    init,
    key,
    ls,
    prune,
    repair,
    restore,
    snapshots,
    stats,
    unlock,
)

ALL_COMMANDS: list[ModuleType] = [init, backup, snapshots, ls, restore, dump, diff, forget,
                                  prune, check, repair, stats, unlock, cat, key]

__all__ = ["ALL_COMMANDS"]
