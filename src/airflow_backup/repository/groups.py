"""Snapshot groups, restic's ``--group-by host,paths,tags``: used by ``forget`` (a policy
applies per group) and ``snapshots --group-by``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_backup.errors import ConfigError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.snapshot import Snapshot

__all__ = ["GroupKey", "group_snapshots", "parse_group_by"]

_GROUP_WORDS = {"host": "host", "hosts": "host", "path": "paths", "paths": "paths",
                "tag": "tags", "tags": "tags"}


def parse_group_by(text: str) -> frozenset[str]:
    """Given restic's ``--group-by`` value (``host,paths,tags`` in any combination, or ``''``
    for no grouping), return the set of criteria. Raise ConfigError on an unknown word."""
    out = set()
    for word in text.split(","):
        word = word.strip()
        if not word:
            continue
        if word not in _GROUP_WORDS:
            raise ConfigError(f"unknown grouping option {word!r} (use host, paths and/or tags)")
        out.add(_GROUP_WORDS[word])
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class GroupKey:
    """A snapshot group: host, sorted paths and sorted tags; None where not grouped by it."""

    hostname: str = ""
    paths: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None

    def to_json(self) -> JSONObject:
        """Return restic's ``SnapshotGroupKey`` JSON object."""
        return {"hostname": self.hostname,
                "paths": None if self.paths is None else list(self.paths),
                "tags": None if self.tags is None else list(self.tags)}

    def sort_key(self) -> str:
        """Return a stable text to order groups by."""
        return json.dumps(self.to_json(), sort_keys=True)


def group_snapshots(snapshots: Iterable[Snapshot],
                    by: frozenset[str]) -> list[tuple[GroupKey, list[Snapshot]]]:
    """Given snapshots and grouping criteria, return (key, snapshots in the given order)
    pairs, ordered by key. Paths and tags are compared sorted, as restic does."""
    groups: dict[GroupKey, list[Snapshot]] = {}
    for sn in snapshots:
        key = GroupKey(
            hostname=sn.hostname if "host" in by else "",
            paths=tuple(sorted(sn.paths)) or None if "paths" in by else None,
            tags=tuple(sorted(sn.tags)) or None if "tags" in by else None,
        )
        groups.setdefault(key, []).append(sn)
    return sorted(groups.items(), key=lambda kv: kv[0].sort_key())
