"""Archive ahead: WAL files stored before PostgreSQL asks for them, and the receipts that
let its later ``archive_command`` calls return at once.

PostgreSQL runs ``archive_command`` once per WAL file, one at a time. Each call of a fresh
process pays for starting Python, deriving the repository key and taking a lock — about
half a second, more than storing the 16 MiB segment itself — so a busy server could
outrun one-file-per-process archiving. pgBackRest answers with an asynchronous spool; we do
the same in-line: when asked for one file, ``pg archive-wal`` also stores the files the
server has already marked ready (``pg_wal/archive_status/NAME.ready``), each as its own
snapshot exactly as if asked, and leaves a *receipt* for each in a local spool directory.
When the server then asks for such a file, the receipt answers without opening the
repository.

A receipt is honoured only if the file at ``%p`` still has the size and SHA-256 recorded
when it was stored; it is written (and fsynced) only after the file's snapshot is durable,
and removed when used. So the ``archive_command`` contract holds: exit 0 means the file is
in the repository. The spool directory is per repository location (a hash of its URL);
receipts that PostgreSQL never asks for (a server re-initialised, a timeline abandoned)
are dropped by the next batch. Standard library only: :mod:`airflow_backup.cli.start`
answers from receipts before the rest of the CLI loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArchiveSpool", "PrefetchSpool", "Receipt", "file_digest", "prefetch_directory",
           "ready_to_archive", "spool_directory"]

#: WAL file names the spool deals with (segments, .history, .partial, .backup).
_WAL_NAME = re.compile(r"^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$")
_RECEIPT = ".receipt"
#: Receipts older than this are never honoured (a spool left from another life).
MAX_RECEIPT_AGE = 24 * 3600.0


def _per_repository(cache_root: Path, kind: str, repository_url: str) -> Path:
    # The location's hash: the repository is not opened to find the directory.
    digest = hashlib.sha256(repository_url.encode("utf-8", "surrogateescape")).hexdigest()
    return cache_root / kind / digest[:32]


def spool_directory(cache_root: Path, repository_url: str) -> Path:
    """Return the receipts directory of the repository at ``repository_url`` (for
    ``archive-wal``) under ``cache_root``."""
    return _per_repository(cache_root, "pitr-spool", repository_url)


def prefetch_directory(cache_root: Path, repository_url: str) -> Path:
    """Return the directory of WAL files fetched ahead from the repository at
    ``repository_url`` (for ``restore-wal``) under ``cache_root``."""
    return _per_repository(cache_root, "pitr-prefetch", repository_url)


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Return the size and SHA-256 (hex) of the file at ``path``. Raise OSError."""
    with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256")
        return f.tell(), sha.hexdigest()


def ready_to_archive(path: str | os.PathLike[str], limit: int) -> list[Path]:
    """Return up to ``limit`` WAL files beside ``path`` (the ``%p`` being archived) that
    PostgreSQL has marked ready (``archive_status/NAME.ready``), other than ``path``
    itself: ``.history`` files first, then by name (PostgreSQL's own order). An unreadable
    ``archive_status`` gives none: archiving ahead is only an optimisation."""
    if limit <= 0:
        return []
    wal_dir = Path(path).parent
    current = Path(path).name
    try:
        names = [n[: -len(".ready")] for n in os.listdir(wal_dir / "archive_status")
                 if n.endswith(".ready")]
    except OSError:
        return []
    names = [n for n in names if n != current and _WAL_NAME.match(n)]
    names.sort(key=lambda n: (not n.endswith(".history"), n))
    return [wal_dir / n for n in names[:limit] if (wal_dir / n).is_file()]


@dataclass(frozen=True, slots=True)
class Receipt:
    """A WAL file stored ahead: its name, size, SHA-256 and snapshot."""

    name: str
    size: int
    sha256: str
    snapshot_id: str


class ArchiveSpool:
    """The receipts of one repository's archived-ahead WAL files, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / (name + _RECEIPT)

    def write(self, receipt: Receipt) -> None:
        """Record ``receipt`` durably (temp file, fsync, rename, directory fsync). Call only
        once the file's snapshot is durable. Raise OSError."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"name": receipt.name, "size": receipt.size, "sha256": receipt.sha256,
               "snapshot_id": receipt.snapshot_id}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(receipt.name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def take(self, path: str | os.PathLike[str]) -> Receipt | None:
        """Return the receipt for the WAL file at ``path`` and remove it, if there is one, it
        is fresh and the file still has the recorded size and SHA-256; else None (a receipt
        that does not match is removed too). Never raises: no receipt means "store it"."""
        name = os.path.basename(os.fspath(path))
        if not _WAL_NAME.match(name):
            return None
        receipt_path = self._path(name)
        try:
            st = receipt_path.stat()
            doc = json.loads(receipt_path.read_text())
            receipt = Receipt(str(doc["name"]), int(doc["size"]), str(doc["sha256"]),
                              str(doc["snapshot_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            import time

            fresh = time.time() - st.st_mtime < MAX_RECEIPT_AGE
            matches = fresh and receipt.name == name and \
                file_digest(path) == (receipt.size, receipt.sha256)
        except OSError:
            matches = False
        with contextlib.suppress(OSError):
            receipt_path.unlink()
        return receipt if matches else None

    def drop_stale(self, keep: set[str]) -> None:
        """Remove every receipt whose WAL name is not in ``keep`` (files PostgreSQL will
        not ask for any more) and leftover temporary files. Never raises."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return
        for entry in entries:
            stale = entry.startswith(".tmp-") or (
                entry.endswith(_RECEIPT) and entry[: -len(_RECEIPT)] not in keep)
            if stale:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / entry)


class PrefetchSpool:
    """WAL segments fetched ahead for ``restore-wal``, one file per name in ``directory``.

    A file appears there only complete and verified against the SHA-256 recorded when it
    was archived (the fetch writes a temp file, checks, fsyncs and renames), and an archive
    never holds two contents under one name, so a file here is the segment of that name.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, name: str) -> Path:
        """Return where the prefetched segment ``name`` goes (creating the directory)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory / name

    def has(self, name: str) -> bool:
        """Return whether ``name`` is fetched already."""
        return (self.directory / name).is_file()

    def take(self, name: str, dest: str | os.PathLike[str]) -> int | None:
        """Move the prefetched ``name`` to ``dest`` (``%p``; rename, or copy + fsync +
        rename across file systems); return its size, or None if it is not here or too
        old. Never raises: no file means "fetch it"."""
        if not _WAL_NAME.match(name):
            return None
        src = self.directory / name
        try:
            st = src.stat()
            import time

            if time.time() - st.st_mtime >= MAX_RECEIPT_AGE:
                src.unlink()
                return None
            try:
                os.replace(src, dest)
            except OSError:
                target = Path(dest)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
                try:
                    with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                        while chunk := f.read(1 << 20):
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(tmp, target)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                src.unlink()
            return st.st_size
        except OSError:
            return None

    def drop_stale(self, keep: set[str]) -> None:
        """Remove every prefetched file not in ``keep`` (segments recovery went past or
        will not ask for) and leftover temporary files. Never raises."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return
        for entry in entries:
            if entry not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / entry)
