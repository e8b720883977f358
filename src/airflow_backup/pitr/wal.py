"""Archive WAL files into the repository and fetch them back (``archive_command`` and
``restore_command``).

The contract of ``archive_command`` (PostgreSQL docs, "Setting Up WAL Archiving"):
:func:`archive_wal` returns only once the file is durable (its snapshot, index and pack
written, which the storage layer fsyncs); a file already archived under the same name with
identical content is a success without writing anything (PostgreSQL may archive a file again
after a crash); different content raises :class:`~airflow_backup.errors.WalConflict` and is
never overwritten (``.history`` files included).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from airflow_backup.archiver.archive import Archiver
from airflow_backup.archiver.options import BackupOptions
from airflow_backup.errors import (
    BackupError,
    ConfigError,
    IntegrityError,
    SourceMissing,
    WalConflict,
    WalMissing,
    first_line,
)
from airflow_backup.jsontypes import JSONObject
from airflow_backup.pitr.catalog import WAL_TAG, PitrCatalog, pitr_metadata
from airflow_backup.pitr.names import parse_wal_name
from airflow_backup.pitr.spool import ArchiveSpool, PrefetchSpool, Receipt, ready_to_archive
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.restorer.dump import dump_file

__all__ = ["ArchiveRun", "ArchivedWal", "archive_wal", "archive_wal_ahead", "fetch_wal",
           "fetch_wal_ahead", "read_wal"]


@dataclass(frozen=True, slots=True)
class ArchivedWal:
    """What :func:`archive_wal` did: ``already`` if an identical copy was there."""

    name: str
    snapshot_id: str
    size: int
    already: bool
    sha256: str = ""


def archive_wal(repo: Repository, catalog: PitrCatalog, path: str | os.PathLike[str], *,
                hostname: str | None = None, refresh: bool = True) -> ArchivedWal:
    """Store the WAL file at ``path`` (``%p``) under its base name (see the module doc).

    ``refresh=False`` trusts ``catalog`` as it is (the caller refreshed it and saves it).
    Raise ConfigError for a name that is not a WAL file, SourceMissing if the file cannot be
    read, WalConflict if another content is archived under that name, or a storage error.
    """
    name = os.path.basename(os.fspath(path))
    wal = parse_wal_name(name)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SourceMissing(f"cannot read {os.fspath(path)}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if refresh:
        catalog.refresh()
    for entry in catalog.wal(name):
        sn = repo.load_snapshot(entry.snapshot_id)
        stored = pitr_metadata(sn) or {}
        if stored.get("name") != name:
            raise IntegrityError(f"snapshot {sn.short_id} is not the WAL file {name} the "
                                 "local PITR cache says it is")
        if stored.get("sha256") == digest and stored.get("size") == len(data):
            return ArchivedWal(name, sn.id, len(data), already=True, sha256=digest)
        raise WalConflict(f"{name} is already archived (snapshot {sn.short_id}) with "
                          "different content; refusing to overwrite it")
    meta: JSONObject = {"pitr": {"kind": "wal", "name": name, "type": wal.kind,
                                 "timeline": wal.timeline, "size": len(data),
                                 "sha256": digest}}
    options = BackupOptions(tags=[WAL_TAG, f"timeline={wal.timeline_hex}", f"segment={name}"],
                            hostname=hostname, metadata=meta)
    result = Archiver(repo).backup_stream(io.BytesIO(data), name, options)
    catalog.remember(result.snapshot)
    if refresh:
        catalog.save()
    return ArchivedWal(name, result.snapshot.id, len(data), already=False, sha256=digest)


@dataclass(frozen=True, slots=True)
class ArchiveRun:
    """What :func:`archive_wal_ahead` did: the file asked for, the files stored ahead
    (each with a receipt), and why it stopped early, if it did."""

    asked: ArchivedWal
    ahead: list[ArchivedWal]
    ahead_stopped: str = ""


def archive_wal_ahead(repo: Repository, catalog: PitrCatalog,
                      path: str | os.PathLike[str], spool: ArchiveSpool, *, ahead: int,
                      hostname: str | None = None) -> ArchiveRun:
    """Store the WAL file at ``path`` like :func:`archive_wal`, then up to ``ahead`` more
    files the server has marked ready, each as its own snapshot, leaving a receipt in
    ``spool`` for each once it is durable (:mod:`.spool`).

    Errors about ``path`` itself raise as in :func:`archive_wal`. An error on a file
    stored ahead stops the look-ahead without failing (PostgreSQL asks for that file later
    and then gets the error); it is reported in ``ahead_stopped``.
    """
    catalog.refresh()
    asked = archive_wal(repo, catalog, path, hostname=hostname, refresh=False)
    done: list[ArchivedWal] = []
    stopped = ""
    try:
        following = ready_to_archive(path, ahead)
        spool.drop_stale({p.name for p in following})
        for nxt in following:
            try:
                stored = archive_wal(repo, catalog, nxt, hostname=hostname, refresh=False)
            except BackupError as exc:
                stopped = f"{nxt.name}: {first_line(exc)}"
                break
            spool.write(Receipt(stored.name, stored.size, stored.sha256, stored.snapshot_id))
            done.append(stored)
    except OSError as exc:
        stopped = f"spool {spool.directory}: {exc.strerror or exc}"
    finally:
        catalog.save()
    return ArchiveRun(asked, done, stopped)


class _Hashing:
    """A binary writer that hashes what it passes on."""

    def __init__(self, out: io.BufferedWriter) -> None:
        self.out, self.sha = out, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _lookup(repo: Repository, catalog: PitrCatalog, name: str, refresh: bool = True
            ) -> tuple[Snapshot, JSONObject]:
    parse_wal_name(name)
    if refresh:
        catalog.refresh()
    entries = catalog.wal(name)
    if not entries:
        raise WalMissing(f"{name}: not in the WAL archive")
    sn = repo.load_snapshot(entries[0].snapshot_id)
    meta = pitr_metadata(sn) or {}
    if meta.get("name") != name:
        raise IntegrityError(f"snapshot {sn.short_id} is not the WAL file {name} the local "
                             "PITR cache says it is")
    return sn, meta


def read_wal(repo: Repository, catalog: PitrCatalog, name: str) -> bytes:
    """Return the content of the archived WAL file ``name`` (meant for the small
    ``.history`` files), verified against its recorded SHA-256.

    Raise WalMissing if it is not archived, IntegrityError if it does not match.
    """
    sn, meta = _lookup(repo, catalog, name)
    buf = io.BytesIO()
    dump_file(repo, sn, name, cast(BinaryIO, buf))
    data = buf.getvalue()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256") or len(data) != meta.get("size"):
        raise IntegrityError(f"{name}: restored content does not match the SHA-256 "
                             f"recorded in snapshot {sn.short_id}")
    return data


def fetch_wal(repo: Repository, catalog: PitrCatalog, name: str,
              dest: str | os.PathLike[str], *, refresh: bool = True) -> int:
    """Write the archived WAL file ``name`` (``%f``) to ``dest`` (``%p``); return its size.

    The file appears at ``dest`` only complete and verified (temp file, fsync, rename).
    ``refresh=False`` trusts ``catalog`` as it is (refreshed by the caller). Raise WalMissing
    if it is not archived, ConfigError for a bad name, IntegrityError if the stored copy does
    not match the SHA-256 recorded when it was archived.
    """
    sn, meta = _lookup(repo, catalog, name, refresh)
    target = Path(dest)
    if target.is_dir():
        raise ConfigError(f"{target}: is a directory (restore-wal takes %f and %p)")
    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            hashing = _Hashing(f)
            size = dump_file(repo, sn, name, cast(BinaryIO, hashing))
            os.fsync(f.fileno())
        if hashing.sha.hexdigest() != meta.get("sha256") or size != meta.get("size"):
            raise IntegrityError(f"{name}: restored content does not match the SHA-256 "
                                 f"recorded in snapshot {sn.short_id}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size


def fetch_wal_ahead(repo: Repository, catalog: PitrCatalog, name: str,
                    dest: str | os.PathLike[str], prefetch: PrefetchSpool, *,
                    ahead: int) -> list[str]:
    """Fetch ``name`` into ``dest`` like :func:`fetch_wal`, then up to ``ahead`` of the
    archived segments that follow it on its timeline into ``prefetch`` (each verified like
    ``dest``), so that recovery's next ``restore_command`` calls find them locally; return
    the names prefetched. Errors about ``name`` raise as in :func:`fetch_wal`; an error
    while prefetching only ends the prefetch (the segment is fetched when asked for)."""
    fetch_wal(repo, catalog, name, dest)
    wal = parse_wal_name(name)
    if wal.kind != "segment" or ahead <= 0:
        return []
    following = sorted(e.name for e in catalog.entries("wal")
                       if e.name > name and e.name.startswith(wal.timeline_hex)
                       and len(e.name) == len(name))[:ahead]
    prefetch.drop_stale(set(following))
    done: list[str] = []
    for nxt in following:
        if prefetch.has(nxt):
            done.append(nxt)
            continue
        try:
            fetch_wal(repo, catalog, nxt, prefetch.path_for(nxt), refresh=False)
        except (BackupError, OSError):
            break
        done.append(nxt)
    return done
