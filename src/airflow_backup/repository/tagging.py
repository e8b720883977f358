"""Changing snapshots' tags, as restic's ``tag`` does: a snapshot whose tags change is saved
anew (its old id kept in ``original``, unless it already names one) and the old snapshot
file removed; a snapshot whose tags would not change is left alone."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_backup.errors import ConfigError
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["TagChange", "new_tags", "retag"]


@dataclass(frozen=True, slots=True)
class TagChange:
    """What to do with the tags: ``set`` them (replacing all) or ``add``/``remove`` some."""

    set: tuple[str, ...] | None = None
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.set is not None and (self.add or self.remove):
            raise ConfigError("--set cannot be combined with --add or --remove")
        if self.set is None and not (self.add or self.remove):
            raise ConfigError("nothing to do: give --set, --add or --remove")


def new_tags(tags: Sequence[str], change: TagChange) -> list[str]:
    """Return ``tags`` after ``change`` (order kept, no duplicates added)."""
    if change.set is not None:
        return list(dict.fromkeys(change.set))
    out = [t for t in tags if t not in change.remove]
    out += [t for t in change.add if t not in out]
    return out


def retag(repo: Repository, snapshots: Sequence[Snapshot], change: TagChange
          ) -> list[tuple[str, str]]:
    """Apply ``change`` to ``snapshots`` (the caller holds an exclusive lock); return
    ``(old id, new id)`` for each snapshot changed. The new snapshot is saved before the
    old file is removed, so an interruption leaves both, never neither."""
    changed = []
    for sn in snapshots:
        tags = new_tags(sn.tags, change)
        if tags == list(sn.tags):
            continue
        renewed = copy.copy(sn)
        renewed.tags = tags
        if renewed.original is None:
            renewed.original = bytes.fromhex(sn.id)
        renewed.id = ""
        new_id = repo.save_snapshot(renewed)
        repo.remove_snapshot(sn.id)
        changed.append((sn.id, new_id))
    return changed
