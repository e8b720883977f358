"""Replace a small local file atomically: a reader sees the old content or the new, never
part of it. Used for what the client keeps beside the repository (cache files, key hints,
known directories, metrics)."""

from __future__ import annotations

import contextlib
import os
import secrets

__all__ = ["replace_file"]


def replace_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a new file beside ``path`` with permissions ``mode`` (exactly,
    whatever the umask), then rename it over ``path``. Raise OSError if that fails; the
    temporary file is removed then. The directory must exist."""
    directory, name = os.path.split(os.fspath(path))
    # pid and a random part: threads and processes may replace the same file at once.
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
