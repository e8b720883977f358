"""scrypt, as key files use it, with the fewest imports possible.

:mod:`airflow_backup.cli.start` starts the key derivation before the rest of the program
loads (slow with a cold page cache), so everything it needs to read a key file's cost
parameters and run scrypt lives here, on the standard library alone: the derivation then
starts almost as soon as the process does instead of after cryptography and the storage
layer have loaded. :mod:`airflow_backup.repository.keys` builds on it.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any, NamedTuple

__all__ = ["MAX_MEM", "KdfError", "KdfParams", "derive_ahead", "key_file_kdf", "scrypt",
           "take_ahead"]

MAX_MEM = (1 << 31) - 1


class KdfError(ValueError):
    """A key file's KDF fields are missing, malformed or out of range."""


class KdfParams(NamedTuple):
    """scrypt cost parameters."""

    n: int
    r: int
    p: int


def scrypt(password: str, salt: bytes, params: KdfParams) -> bytes:
    """Return the 64 bytes scrypt derives from ``password``. Raise ValueError (or
    MemoryError) if this machine cannot derive with ``params``."""
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=params.n, r=params.r,
                          p=params.p, dklen=64, maxmem=MAX_MEM)


def key_file_kdf(obj: Any, what: str) -> tuple[bytes, KdfParams]:
    """Given a key file's parsed JSON, return its salt and scrypt parameters. Raise
    KdfError naming ``what`` if they are missing, malformed or out of range."""
    if not isinstance(obj, dict):
        raise KdfError(f"{what}: malformed key file")
    if obj.get("kdf") != "scrypt":
        raise KdfError(f"{what}: unsupported KDF {obj.get('kdf')!r}")
    try:
        params = KdfParams(int(obj["N"]), int(obj["r"]), int(obj["p"]))
        salt = base64.b64decode(obj["salt"])
    except (KeyError, TypeError, ValueError):
        raise KdfError(f"{what}: malformed key file") from None
    n, r, p = params
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n > MAX_MEM or r * p >= 1 << 30:
        raise KdfError(f"{what}: invalid scrypt parameters N={n} r={r} p={p}")
    return salt, params


class _Ahead:
    """One derivation running in a background thread, and its result (None if it failed)."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: bytes | None = None


# Derivations started ahead of need, by exact inputs; take_ahead() takes its own.
_AHEAD: dict[tuple[str, bytes, KdfParams], _Ahead] = {}
_AHEAD_LOCK = threading.Lock()


def derive_ahead(password: str, salt: bytes, params: KdfParams) -> None:
    """Start deriving ``password``'s user key in a background thread (scrypt runs without
    the interpreter lock), so that the process can go on starting up meanwhile. A later
    :func:`take_ahead` with the same inputs waits for this result; other inputs are not
    affected."""
    slot = _Ahead()
    with _AHEAD_LOCK:
        if (password, salt, params) in _AHEAD:
            return
        _AHEAD[(password, salt, params)] = slot

    def run() -> None:
        try:
            slot.result = scrypt(password, salt, params)
        except BaseException:  # take_ahead()'s caller derives again, and raises from there
            pass
        finally:
            slot.done.set()

    threading.Thread(target=run, name="derive-ahead", daemon=True).start()


def take_ahead(password: str, salt: bytes, params: KdfParams) -> bytes | None:
    """Return the result of a :func:`derive_ahead` with exactly these inputs (waiting for
    it), and forget it; None if none was started or it failed."""
    with _AHEAD_LOCK:
        slot = _AHEAD.pop((password, salt, params), None)
    if slot is None:
        return None
    slot.done.wait()
    return slot.result
