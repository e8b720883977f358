"""A storage backend on the local filesystem, in restic's layout.

Writes follow restic's durable pattern: write a temp file in the same directory, fsync it,
rename it into place, then fsync the directory. Stored files are made read-only (0o444), as
restic does, so an accidental overwrite fails loudly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from airflow_backup.errors import (
    ConfigError,
    NotFound,
    PermanentStorageError,
    TransientStorageError,
)
from airflow_backup.storage.base import Capabilities, FileInfo, FileType, Handle, object_path

__all__ = ["LocalStorage"]

# errnos that retrying cannot fix (restic marks ENOSPC and EPERM permanent in local.Save).
_PERMANENT_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}


def _map_os_error(exc: OSError, what: str) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: not found")
    if exc.errno in _PERMANENT_ERRNOS:
        return PermanentStorageError(f"{what}: {exc.strerror}")
    return TransientStorageError(f"{what}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems refuse fsync on directories; the rename is still atomic there.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class LocalStorage:
    """A repository directory on a local (or mounted) filesystem."""

    #: A saved file is visible to every process at once (rename is atomic and immediate);
    #: ``load_into`` reads straight into the buffer (``preadv``).
    capabilities = Capabilities.local(load_into=True)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    @property
    def location(self) -> str:
        """Return the repository directory."""
        return str(self._root)

    @property
    def root(self) -> Path:
        """Return the repository directory as a path."""
        return self._root

    def _path(self, handle: Handle) -> Path:
        return self._root / object_path(handle)

    def create_layout(self) -> None:
        """Create the repository directory and restic's sub-directories (data/00..ff too)."""
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            for t in (FileType.INDEX, FileType.KEY, FileType.LOCK, FileType.SNAPSHOT):
                (self._root / t.value).mkdir(exist_ok=True)
            (self._root / "tmp").mkdir(exist_ok=True)
            data = self._root / "data"
            data.mkdir(exist_ok=True)
            for i in range(256):
                (data / f"{i:02x}").mkdir(exist_ok=True)
        except OSError as exc:
            raise _map_os_error(exc, f"create repository at {self._root}") from exc

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` atomically: temp file, fsync, rename, fsync the directory."""
        final = self._path(handle)
        tmp = final.parent / f".tmp-{final.name}-{secrets.token_hex(6)}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if handle.type is not FileType.LOCK and final.exists():
                raise PermanentStorageError(f"{object_path(handle)}: already exists")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # Views are released on the way out, errors too: an export left on the
                # caller's buffer keeps it from being closed (the packer's mmap).
                with memoryview(data) as whole:
                    pos = 0
                    while pos < len(whole):
                        with whole[pos:] as rest:
                            pos += os.write(fd, rest)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o444)
            if handle.type is FileType.LOCK:
                os.replace(tmp, final)
            else:
                # link() fails if the name exists, so two writers of one name cannot both win.
                try:
                    os.link(tmp, final)
                    tmp.unlink()
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    os.replace(tmp, final)  # a file system without hard links
            _fsync_dir(final.parent)
        except OSError as exc:
            # The cleanup can fail for the same reason as the save (a read-only file system
            # refuses even to unlink a missing file); the save's error is the one to report.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _map_os_error(exc, f"save {object_path(handle)}") from exc

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Return a byte range of the file. Raise NotFound if it is missing."""
        try:
            with open(self._path(handle), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except OSError as exc:
            raise _map_os_error(exc, f"load {object_path(handle)}") from exc

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Read up to ``len(buf)`` bytes from ``offset`` straight into ``buf``; return how many
        (fewer only at the end of the file). Raise NotFound if the file is missing."""
        try:
            fd = os.open(self._path(handle), os.O_RDONLY | os.O_CLOEXEC)
            try:
                n = 0
                while n < len(buf):
                    k = os.preadv(fd, [buf[n:]], offset + n)
                    if k == 0:
                        break
                    n += k
                return n
            finally:
                os.close(fd)
        except OSError as exc:
            raise _map_os_error(exc, f"load {object_path(handle)}") from exc

    def stat(self, handle: Handle) -> FileInfo:
        """Return the file's name and size. Raise NotFound if it is missing."""
        try:
            st = self._path(handle).stat()
        except OSError as exc:
            raise _map_os_error(exc, f"stat {object_path(handle)}") from exc
        return FileInfo(handle.name, st.st_size)

    def exists(self, handle: Handle) -> bool:
        """Return whether the file exists. Raise a storage error if that cannot be told
        (permission denied, I/O error)."""
        try:
            self._path(handle).stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _map_os_error(exc, f"stat {object_path(handle)}") from exc
        return True

    def leftover_temporaries(self, older_than: float) -> tuple[str, ...]:
        """Return the ``.tmp-*`` files of interrupted saves (a killed process leaves them),
        last changed more than ``older_than`` seconds ago, relative to the root."""
        cutoff = time.time() - older_than
        found = []
        for dirpath, _dirs, files in os.walk(self._root):
            for name in files:
                if not name.startswith(".tmp-"):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    if os.lstat(full).st_mtime < cutoff:
                        found.append(os.path.relpath(full, self._root))
                except FileNotFoundError:
                    continue  # finished or cleaned up meanwhile
        return tuple(sorted(found))

    def remove_temporary(self, path: str) -> None:
        """Remove a leftover ``.tmp-*`` file. Raise ConfigError for any other path."""
        name = os.path.basename(path)
        full = os.path.normpath(os.path.join(self._root, path))
        if not name.startswith(".tmp-") or os.path.dirname(full) == os.path.dirname(
                str(self._root)) or not full.startswith(str(self._root) + os.sep):
            raise ConfigError(f"{path} is not a temporary file of this repository")
        try:
            os.unlink(full)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _map_os_error(exc, f"remove {path}") from exc

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """Yield every file of the type; temp files of interrupted writes are skipped.
        Raise a storage error for what cannot be read (permission denied, I/O error)."""
        if file_type is FileType.CONFIG:
            path = self._root / "config"
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return
            except OSError as exc:
                raise _map_os_error(exc, "list config") from exc
            yield FileInfo("config", size)
            return
        base = self._root / file_type.value
        dirs = [base]
        if file_type is FileType.DATA:
            try:
                dirs = sorted(p for p in base.iterdir() if p.is_dir())
            except FileNotFoundError:
                return
            except OSError as exc:
                raise _map_os_error(exc, f"list {base}") from exc
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _map_os_error(exc, f"list {d}") from exc
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed meanwhile (a lock refreshed or released)
                except OSError as exc:
                    raise _map_os_error(exc, f"list {d}") from exc
                yield FileInfo(entry.name, size)

    def remove(self, handle: Handle) -> None:
        """Delete the file (read-only files too). Raise NotFound if it is missing."""
        try:
            self._path(handle).unlink()
        except OSError as exc:
            raise _map_os_error(exc, f"remove {object_path(handle)}") from exc
