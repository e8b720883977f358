"""The base of every storage wrapper: forward everything to the store inside.

A wrapper (retries, fault injection, the metadata cache, read-ahead) subclasses
:class:`DelegatingStorage` and overrides only what it changes; every other method of the
Storage protocol, the location and the capabilities are those of ``inner``. A wrapper that
changes what the store can do overrides ``capabilities`` too (read-ahead, for example,
serves reads through its own windows, so it does not read into a buffer natively).
"""

from __future__ import annotations

from collections.abc import Iterator

from airflow_backup.storage.base import (
    Capabilities,
    FileInfo,
    FileType,
    Handle,
    Storage,
    load_into,
)

__all__ = ["DelegatingStorage"]


class DelegatingStorage:
    """A Storage that passes every call to ``inner`` unchanged."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @property
    def location(self) -> str:
        """Return the wrapped store's location."""
        return self.inner.location

    @property
    def capabilities(self) -> Capabilities:
        """Return the wrapped store's capabilities."""
        return self.inner.capabilities

    def create_layout(self) -> None:
        """Create the layout in the wrapped store."""
        self.inner.create_layout()

    def leftover_temporaries(self, older_than: float) -> tuple[str, ...]:
        """List the wrapped store's leftover temporary files."""
        return self.inner.leftover_temporaries(older_than)

    def remove_temporary(self, path: str) -> None:
        """Remove a leftover temporary file from the wrapped store."""
        self.inner.remove_temporary(path)

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Save to the wrapped store."""
        self.inner.save(handle, data)

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Load a range from the wrapped store."""
        return self.inner.load(handle, offset, length)

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read a range into ``buf`` from the wrapped store (see
        :func:`~airflow_backup.storage.base.load_into`)."""
        return load_into(self.inner, handle, offset, buf)

    def stat(self, handle: Handle) -> FileInfo:
        """Stat in the wrapped store."""
        return self.inner.stat(handle)

    def exists(self, handle: Handle) -> bool:
        """Check existence in the wrapped store."""
        return self.inner.exists(handle)

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """List the wrapped store."""
        return self.inner.list(file_type)

    def remove(self, handle: Handle) -> None:
        """Remove from the wrapped store."""
        self.inner.remove(handle)
