"""CLI sub-commands, one module each.

Every module is imported to build the parser, so a module imports at its top only what its
parser needs and what repository commands share; the job commands load the config models
(pydantic, YAML) inside their ``run``, which keeps every other command's start-up short.
"""

from types import ModuleType

from airflow_backup.cli.commands import (
    backup,
    cat,
    check,
    config,
    copy,
    diff,
    drill,
    dump,
    find,
    forget,
    generate,
    init,
    key,
    list_cmd,
    ls,
    pg,
    prune,
    repair,
    restore,
    run,
    runbook,
    snapshots,
    stats,
    status,
    tag,
    unlock,
    version,
)

ALL_COMMANDS: list[ModuleType] = [init, backup, snapshots, ls, restore, dump, diff, forget,
                                  prune, check, repair, stats, tag, copy, unlock, cat,
                                  list_cmd, find, key, config, run, status, drill, runbook,
                                  pg, version, generate]

__all__ = ["ALL_COMMANDS"]
