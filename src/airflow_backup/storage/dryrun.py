"""A storage wrapper for dry runs (restic's ``backup --dry-run``): reads come from the store,
nothing is written to it or removed from it.

What the repository code saves is kept in memory instead — small files (indexes, snapshots,
trees' packs are data files too) as bytes so that they can be read back within the run, pack
files by size only (a dry run never reads back the data it would have added). Listings and
``exists`` see both, so the code above runs exactly as in a real backup.
"""

from __future__ import annotations

from collections.abc import Iterator

from airflow_backup.errors import NotFound
from airflow_backup.storage.base import FileInfo, FileType, Handle, Storage
from airflow_backup.storage.wrapper import DelegatingStorage

__all__ = ["DryRunStorage"]


class DryRunStorage(DelegatingStorage):
    """``inner`` for reading; writes and removals stay in this object."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self._sizes: dict[Handle, int] = {}
        self._kept: dict[Handle, bytes] = {}

    @property
    def written(self) -> int:
        """Return how many bytes a real run would have written."""
        return sum(self._sizes.values())

    def create_layout(self) -> None:
        """Create nothing."""

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Remember the file (its size; its bytes unless it is a pack)."""
        self._sizes[handle] = len(data)
        if handle.type is not FileType.DATA:
            self._kept[handle] = bytes(data)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load a file saved in this run, else from the store. Raise NotFound for a pack
        saved in this run (its bytes were not kept)."""
        if handle in self._sizes:
            if handle not in self._kept:
                raise NotFound(f"{handle}: not kept in a dry run")
            data = self._kept[handle]
            return data[offset:] if length is None else data[offset:offset + length]
        return self.inner.load(handle, offset, length)

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read into ``buf`` (see :meth:`load`)."""
        if handle in self._sizes:
            data = self.load(handle, offset, len(buf))
            buf[:len(data)] = data
            return len(data)
        return super().load_into(handle, offset, buf)

    def stat(self, handle: Handle) -> FileInfo:
        """Stat a file saved in this run, else in the store."""
        if handle in self._sizes:
            return FileInfo(handle.name, self._sizes[handle])
        return self.inner.stat(handle)

    def exists(self, handle: Handle) -> bool:
        """Return whether the file was saved in this run or is in the store."""
        return handle in self._sizes or self.inner.exists(handle)

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """List the store's files and those saved in this run."""
        mine = {h.name: size for h, size in self._sizes.items() if h.type is file_type}
        for info in self.inner.list(file_type):
            if info.name not in mine:
                yield info
        for name, size in mine.items():
            yield FileInfo(name, size)

    def remove(self, handle: Handle) -> None:
        """Forget a file saved in this run; never remove one from the store."""
        self._sizes.pop(handle, None)
        self._kept.pop(handle, None)
