"""Choose snapshots: filters by host, tag and path, and selectors ``latest`` or an id prefix."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError, SnapshotNotFound
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["SnapshotFilter", "find_snapshot", "select_snapshots"]


@dataclass(slots=True)
class SnapshotFilter:
    """restic's filter semantics.

    ``hosts``: any of them. ``tags``: a list of tag groups, each a comma-separated string whose
    tags must all be present; a snapshot matches if any group matches. ``paths``: the snapshot
    must contain all of them.
    """

    hosts: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def matches(self, sn: Snapshot) -> bool:
        """Return whether ``sn`` passes every filter."""
        if self.hosts and sn.hostname not in self.hosts:
            return False
        if self.tags:
            groups = [[t for t in g.split(",") if t] for g in self.tags]
            if not any(all(t in sn.tags for t in g) for g in groups):
                return False
        if self.paths:
            wanted = {os.path.normpath(p) for p in self.paths}
            if not wanted <= {os.path.normpath(p) for p in sn.paths}:
                return False
        return True


def select_snapshots(repo: Repository, flt: SnapshotFilter | None = None,
                     ids: list[str] | None = None) -> list[Snapshot]:
    """Return the snapshots matching ``flt`` (oldest first), or those named by ``ids``
    (``latest`` or id prefixes), in the given order."""
    snaps = repo.list_snapshots()
    if flt is not None:
        snaps = [s for s in snaps if flt.matches(s)]
    if not ids:
        return snaps
    return [_pick(snaps, i) for i in ids]


def find_snapshot(repo: Repository, selector: str, flt: SnapshotFilter | None = None) -> Snapshot:
    """Return the one snapshot ``selector`` names (``latest`` or a unique id prefix) among those
    matching ``flt``. Raise SnapshotNotFound or ConfigError (ambiguous prefix)."""
    snaps = repo.list_snapshots()
    if flt is not None:
        snaps = [s for s in snaps if flt.matches(s)]
    return _pick(snaps, selector)


def _pick(snaps: list[Snapshot], selector: str) -> Snapshot:
    if selector == "latest":
        if not snaps:
            raise SnapshotNotFound("no snapshot found (latest) matching the filters")
        return max(snaps, key=lambda s: (s.time_ns, s.id))
    if not selector or any(c not in "0123456789abcdef" for c in selector.lower()):
        raise ConfigError(f"invalid snapshot id {selector!r}: use 'latest' or a hex id prefix")
    matches = [s for s in snaps if s.id.startswith(selector.lower())]
    if not matches:
        raise SnapshotNotFound(f"no snapshot with id {selector!r}")
    if len(matches) > 1:
        raise ConfigError(f"snapshot id prefix {selector!r} is ambiguous")
    return matches[0]
