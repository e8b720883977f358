"""An in-memory storage backend, for tests and dry runs. Thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from airflow_backup.errors import NotFound, PermanentStorageError
from airflow_backup.storage.base import (
    Capabilities,
    FileInfo,
    FileType,
    Handle,
    load_by_copy,
    object_path,
)

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Files kept in a dict keyed by handle. Nothing survives the process."""

    #: Saved files are visible at once, like a local file system's; reads are copies.
    capabilities = Capabilities.local(load_into=False)

    def __init__(self) -> None:
        self._files: dict[Handle, bytes] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        """Return a fixed, descriptive location."""
        return f"memory:{id(self):x}"

    def create_layout(self) -> None:
        """Nothing to create in memory."""

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Store a copy of ``data``; refuse to overwrite anything but a lock."""
        with self._lock:
            if handle.type is not FileType.LOCK and handle in self._files:
                raise PermanentStorageError(f"{object_path(handle)}: already exists")
            self._files[handle] = bytes(data)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Return a byte range. Raise NotFound if the file is missing."""
        with self._lock:
            try:
                data = self._files[handle]
            except KeyError:
                raise NotFound(f"load {object_path(handle)}: not found") from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Copy a byte range into ``buf`` (through :meth:`load`); return how many bytes.
        Raise NotFound if the file is missing."""
        return load_by_copy(self, handle, offset, buf)

    def stat(self, handle: Handle) -> FileInfo:
        """Return the file's size. Raise NotFound if it is missing."""
        with self._lock:
            try:
                return FileInfo(handle.name, len(self._files[handle]))
            except KeyError:
                raise NotFound(f"stat {object_path(handle)}: not found") from None

    def exists(self, handle: Handle) -> bool:
        """Return whether the file exists."""
        with self._lock:
            return handle in self._files

    def leftover_temporaries(self, older_than: float) -> tuple[str, ...]:
        """Return nothing: every save here is one atomic put, nothing temporary is left."""
        return ()

    def remove_temporary(self, path: str) -> None:
        """Nothing to remove (see :meth:`leftover_temporaries`)."""
        raise NotFound(f"no temporary file {path}")

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """Yield a snapshot of the files of one type."""
        with self._lock:
            items = [(h.name, len(d)) for h, d in self._files.items() if h.type is file_type]
        for name, size in items:
            yield FileInfo(name, size)

    def remove(self, handle: Handle) -> None:
        """Delete the file. Raise NotFound if it is missing."""
        with self._lock:
            if self._files.pop(handle, None) is None:
                raise NotFound(f"remove {object_path(handle)}: not found")

    def corrupt(self, handle: Handle, data: bytes) -> None:
        """Replace a stored file's bytes, bypassing every check (for integrity tests)."""
        with self._lock:
            self._files[handle] = bytes(data)
