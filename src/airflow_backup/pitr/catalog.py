"""Which snapshot holds which WAL file or base backup, without decrypting every snapshot
file on every call.

``archive_command`` and ``restore_command`` run once per WAL file, and a busy server archives
thousands a day. Listing snapshot file *names* is cheap on every store; loading and
decrypting each file is not. :class:`PitrCatalog` therefore keeps, per repository, a local
cache file ``<cache root>/pitr/<repository id>.json`` mapping snapshot id to its PITR
metadata (name, kind, timeline, LSNs and times; never content hashes), or ``null`` for a
snapshot that is not ours. A refresh lists the names, loads only the snapshots not yet in the
cache and drops those gone (forgotten). The cache is only an index: every snapshot is loaded
and checked again before its data is used, so a stale or edited cache can at worst make a
WAL file look absent. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from airflow_backup.errors import IntegrityError, NotFound
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.storage.base import FileType

__all__ = ["BASE_TAG", "WAL_TAG", "CatalogEntry", "PitrCatalog", "pitr_metadata"]

WAL_TAG = "wal"
BASE_TAG = "pg-basebackup"
_CACHE_VERSION = 1
#: Metadata fields never written to the (unencrypted) local cache.
_PRIVATE = frozenset({"sha256"})


def pitr_metadata(sn: Snapshot) -> JSONObject | None:
    """Return a snapshot's ``extra.airflow_backup.pitr`` object, or None if it has none."""
    meta = sn.extra.get("airflow_backup")
    if not isinstance(meta, dict):
        return None
    pitr = meta.get("pitr")
    return pitr if isinstance(pitr, dict) else None


class CatalogEntry:
    """One snapshot of the catalogue: its id, time and PITR metadata (cache-safe fields)."""

    __slots__ = ("meta", "snapshot_id", "time")

    def __init__(self, snapshot_id: str, time: str, meta: JSONObject) -> None:
        self.snapshot_id = snapshot_id
        self.time = time
        self.meta = meta

    @property
    def kind(self) -> str:
        """Return ``wal`` or ``basebackup``."""
        return str(self.meta.get("kind", ""))

    @property
    def name(self) -> str:
        """Return the WAL file name (empty for a base backup)."""
        return str(self.meta.get("name", ""))


class PitrCatalog:
    """The PITR snapshots of one repository (see the module docstring)."""

    def __init__(self, repo: Repository, cache_root: Path | None) -> None:
        self.repo = repo
        self._path = (cache_root / "pitr" / f"{repo.config.id}.json"
                      if cache_root is not None else None)
        self._known: dict[str, list[str | JSONObject] | None] = {}
        self._loaded = False

    # ---- cache file ----------------------------------------------------------------------

    def _read_cache(self) -> None:
        if self._path is None:
            return
        try:
            doc = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(doc, dict) and doc.get("version") == _CACHE_VERSION \
                and isinstance(doc.get("snapshots"), dict):
            self._known = doc["snapshots"]

    def _write_cache(self) -> None:
        if self._path is None:
            return
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".pitr-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"version": _CACHE_VERSION, "snapshots": self._known}, f,
                              separators=(",", ":"))
                os.replace(tmp, self._path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    # ---- catalogue -----------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the catalogue up to date with the repository's snapshot files."""
        if not self._loaded:
            self._read_cache()
            self._loaded = True
        names = {info.name for info in self.repo.storage.list(FileType.SNAPSHOT)}
        changed = False
        for gone in set(self._known) - names:
            del self._known[gone]
            changed = True
        for sid in sorted(names - set(self._known)):
            try:
                sn = self.repo.load_snapshot(sid)
            except NotFound:
                continue
            except IntegrityError:
                self._known[sid] = None  # damaged: never ours to use; `check` reports it
                changed = True
                continue
            self.remember(sn)
            changed = True
        if changed:
            self._write_cache()

    def remember(self, sn: Snapshot) -> None:
        """Add a snapshot just written (or loaded) to the catalogue."""
        meta = pitr_metadata(sn)
        if meta is None:
            self._known[sn.id] = None
        else:
            self._known[sn.id] = [sn.time, {k: v for k, v in meta.items() if k not in _PRIVATE}]

    def save(self) -> None:
        """Write the cache file now (after :meth:`remember`)."""
        self._write_cache()

    def entries(self, kind: str) -> list[CatalogEntry]:
        """Return the entries of ``kind`` (``wal`` or ``basebackup``), oldest first."""
        out: list[CatalogEntry] = []
        for sid, value in self._known.items():
            if not isinstance(value, list) or len(value) != 2:
                continue
            time, meta = value
            if isinstance(time, str) and isinstance(meta, dict) and meta.get("kind") == kind:
                out.append(CatalogEntry(sid, time, meta))
        out.sort(key=lambda e: (parse_ns(e.time)[0], e.snapshot_id))
        return out

    def wal(self, name: str) -> list[CatalogEntry]:
        """Return the snapshots holding the WAL file ``name``, oldest first."""
        return [e for e in self.entries("wal") if e.name == name]
