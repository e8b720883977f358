"""Key files: a user password, through scrypt, unwraps the repository's master key.

A key file is plain JSON in ``keys/``; its ``data`` field is the master key sealed with the
user key. Readers honour whatever N/r/p the file states; writers calibrate like restic
(r = 8, N = 32768, then p raised until one derivation takes about 500 ms).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from airflow_backup.errors import ConfigError, IntegrityError, WrongPassword
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.timefmt import format_time
from airflow_backup.storage.base import FileType, Handle, Storage

__all__ = ["KdfParams", "KeyFile", "add_key", "calibrate", "derive_ahead", "find_key",
           "load_key_file"]

SALT_SIZE = 64
_TARGET_SECONDS = 0.5
_MAX_MEM = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt cost parameters."""

    n: int
    r: int
    p: int


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A parsed key file; ``id`` is the SHA-256 of its JSON bytes (its file name)."""

    id: str
    created: str
    username: str
    hostname: str
    params: KdfParams
    salt: bytes
    data: bytes


def _scrypt(password: str, salt: bytes, params: KdfParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=params.n, r=params.r, p=params.p,
        dklen=64, maxmem=_MAX_MEM,
    )


# Derivations started ahead of need (derive_ahead), by exact inputs; derive() takes its own.
_AHEAD: dict[tuple[str, bytes, KdfParams], Future[bytes]] = {}
_AHEAD_LOCK = threading.Lock()


def derive_ahead(password: str, salt: bytes, params: KdfParams) -> None:
    """Start deriving the user key of ``password`` in a background thread (scrypt runs
    without the GIL), so that the process can go on starting up meanwhile. A later
    :func:`derive` with the same inputs waits for this result instead of starting over;
    other inputs are not affected. Errors are kept for that call, which then derives anew."""
    slot: Future[bytes] = Future()
    with _AHEAD_LOCK:
        if (password, salt, params) in _AHEAD:
            return
        _AHEAD[(password, salt, params)] = slot

    def run() -> None:
        try:
            slot.set_result(_scrypt(password, salt, params))
        except BaseException as exc:  # kept for derive(), which derives again
            slot.set_exception(exc)

    threading.Thread(target=run, name="derive-ahead", daemon=True).start()


def derive(password: str, salt: bytes, params: KdfParams) -> Key:
    """Return the user key scrypt derives from ``password`` (taking the result of a matching
    :func:`derive_ahead` if one was started)."""
    with _AHEAD_LOCK:
        slot = _AHEAD.pop((password, salt, params), None)
    if slot is not None:
        try:
            return Key.from_kdf(slot.result())
        except Exception:  # derive again below, and raise from there
            pass
    return Key.from_kdf(_scrypt(password, salt, params))


def _params_from_env() -> KdfParams | None:
    raw = os.environ.get("AIRFLOW_BACKUP_KDF_PARAMS")
    if not raw:
        return None
    try:
        n, r, p = (int(x) for x in raw.split(","))
        if n < 2 or n & (n - 1) or r < 1 or p < 1:
            raise ValueError
    except ValueError:
        raise ConfigError("AIRFLOW_BACKUP_KDF_PARAMS must be N,r,p with N a power of two") from None
    return KdfParams(n, r, p)


@lru_cache(maxsize=1)
def _calibrated() -> KdfParams:
    n, r = 32768, 8
    start = time.perf_counter()
    hashlib.scrypt(b"calibrate", salt=b"\0" * SALT_SIZE, n=n, r=r, p=1, dklen=64,
                   maxmem=_MAX_MEM)
    one = max(time.perf_counter() - start, 1e-6)
    return KdfParams(n, r, max(1, round(_TARGET_SECONDS / one)))


def calibrate() -> KdfParams:
    """Return scrypt parameters for a new key file.

    restic's rule: r = 8, N = 32768 (128·r·N just under 60 MiB), p raised until a derivation
    takes about 500 ms on this machine. ``AIRFLOW_BACKUP_KDF_PARAMS=N,r,p`` overrides this (for
    test suites and very slow machines); any reader still accepts the result.
    """
    return _params_from_env() or _calibrated()


def load_key_file(storage: Storage, name: str) -> KeyFile:
    """Load and parse ``keys/<name>``. Raise IntegrityError if the JSON is malformed."""
    raw = storage.load(Handle(FileType.KEY, name))
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise IntegrityError(f"key {name[:8]}: malformed key file")
        if obj.get("kdf") != "scrypt":
            raise IntegrityError(f"key {name[:8]}: unsupported KDF {obj.get('kdf')!r}")
        kf = KeyFile(
            id=name,
            created=str(obj.get("created", "")),
            username=str(obj.get("username", "")),
            hostname=str(obj.get("hostname", "")),
            params=KdfParams(int(obj["N"]), int(obj["r"]), int(obj["p"])),
            salt=base64.b64decode(obj["salt"]),
            data=base64.b64decode(obj["data"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"key {name[:8]}: malformed key file") from exc
    n, r, p = kf.params.n, kf.params.r, kf.params.p
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n > _MAX_MEM or r * p >= 1 << 30:
        raise IntegrityError(f"key {name[:8]}: invalid scrypt parameters N={n} r={r} p={p}")
    return kf


def open_key_file(key_file: KeyFile, password: str) -> Key | None:
    """Return the master key if ``password`` opens ``key_file``, else None."""
    user_key = derive(password, key_file.salt, key_file.params)
    try:
        plain = user_key.open(key_file.data, what=f"key {key_file.id[:8]}")
    except IntegrityError:
        return None
    return Key.from_json(json.loads(plain))


def find_key(storage: Storage, password: str, key_hint: str | None = None) -> tuple[Key, str]:
    """Try every key file (the hinted one first); return (master key, key id).

    Raise WrongPassword if none opens with ``password``.
    """
    names = [info.name for info in storage.list(FileType.KEY)]
    if key_hint:
        names.sort(key=lambda n: not n.startswith(key_hint))
    for name in names:
        try:
            kf = load_key_file(storage, name)
        except IntegrityError:
            continue
        try:
            master = open_key_file(kf, password)
        except (ValueError, MemoryError):
            continue  # a key this machine cannot derive; another key may still open
        if master is not None:
            return master, name
    raise WrongPassword("wrong password or no key found")


def add_key(
    storage: Storage,
    master: Key,
    password: str,
    *,
    username: str | None = None,
    hostname: str | None = None,
    params: KdfParams | None = None,
) -> str:
    """Write a new key file that wraps ``master`` with ``password``; return its id."""
    params = params or calibrate()
    salt = os.urandom(SALT_SIZE)
    user_key = derive(password, salt, params)
    sealed = user_key.seal(json.dumps(master.to_json(), separators=(",", ":")).encode())
    obj = {
        "created": format_time(datetime.now(UTC).astimezone()),
        "username": username if username is not None else _current_user(),
        "hostname": hostname if hostname is not None else socket.gethostname(),
        "kdf": "scrypt",
        "N": params.n,
        "r": params.r,
        "p": params.p,
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(sealed).decode(),
    }
    raw = json.dumps(obj, separators=(",", ":")).encode()
    key_id = hashlib.sha256(raw).hexdigest()
    storage.save(Handle(FileType.KEY, key_id), raw)
    return key_id


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
