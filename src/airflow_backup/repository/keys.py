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
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from airflow_backup.errors import (
    ConfigError,
    IntegrityError,
    NotFound,
    WrongPassword,
    first_line,
)
from airflow_backup.repository import gojson, kdf
from airflow_backup.repository.crypto import EXTENSION, Key
from airflow_backup.repository.gojson import (
    FieldError,
    as_int,
    as_object,
    as_str,
    as_time,
    describe,
)
from airflow_backup.repository.kdf import KdfError, KdfParams, derive_ahead, key_file_kdf
from airflow_backup.repository.timefmt import format_time
from airflow_backup.storage.base import FileType, Handle, Storage

__all__ = ["KdfParams", "KeyFile", "add_key", "calibrate", "derive_ahead", "find_key",
           "load_key_file"]

SALT_SIZE = 64
_TARGET_SECONDS = 0.5


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


def derive(password: str, salt: bytes, params: KdfParams) -> Key:
    """Return the user key scrypt derives from ``password`` (taking the result of a matching
    :func:`derive_ahead` if one was started and succeeded)."""
    early = kdf.take_ahead(password, salt, params)
    return Key.from_kdf(early if early is not None else kdf.scrypt(password, salt, params))


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
    kdf.scrypt("calibrate", b"\0" * SALT_SIZE, KdfParams(n, r, 1))
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
    """Load and parse ``keys/<name>``. Raise IntegrityError naming the file (and the field)
    if the JSON is malformed or its scrypt parameters are out of range.

    Fields are read as restic's Go struct reads them: ``created`` an RFC 3339 time (or
    absent), ``username``/``hostname`` strings, ``kdf`` ``"scrypt"``, ``N``/``r``/``p``
    integers, ``salt`` and ``data`` standard base64 (``data`` at least a sealed empty
    message long).
    """
    what = f"keys/{name}"
    raw = storage.load(Handle(FileType.KEY, name))
    try:
        obj = as_object(gojson.loads(raw), "")
        if obj.get("kdf") != "scrypt":
            raise KdfError(f"{what}: unsupported KDF {describe(obj.get('kdf'))}")
        for field in ("N", "r", "p"):
            as_int(_required(obj, field), field, 0, _MAX_PARAM)
        salt = _base64(obj.get("salt"), "salt")
        data = _base64(obj.get("data"), "data")
        if len(data) < EXTENSION:
            raise FieldError("data", f"too short for a sealed key ({len(data)} bytes)")
        created = "" if obj.get("created") is None else as_time(obj["created"], "created")
        username = as_str(obj.get("username"), "username")
        hostname = as_str(obj.get("hostname"), "hostname")
        _, params = key_file_kdf(obj, what)
    except KdfError as exc:
        raise IntegrityError(str(exc)) from None
    except FieldError as exc:
        raise IntegrityError(f"{what}: malformed key file: {exc}") from None
    except ValueError as exc:
        raise IntegrityError(f"{what}: malformed key file: invalid JSON: {first_line(exc)}"
                             ) from None
    return KeyFile(id=name, created=created, username=username, hostname=hostname,
                   params=params, salt=salt, data=data)


# scrypt's N, r and p are Go ints; key_file_kdf bounds their product by memory.
_MAX_PARAM = (1 << 63) - 1
# A key file holds a salt and one sealed master key: a few hundred bytes of base64.
_MAX_BASE64 = 1 << 16


def _required(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise FieldError(name, "missing")
    return value


def _base64(value: Any, field: str) -> bytes:
    """Decode a Go ``[]byte`` field: standard base64 with padding; raise FieldError."""
    if value is None:
        raise FieldError(field, "missing")
    text = as_str(value, field)
    if len(text) > _MAX_BASE64:
        raise FieldError(field, f"too long ({len(text)} characters)")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise FieldError(field, f"not base64: {describe(text)}") from None


def open_key_file(key_file: KeyFile, password: str) -> Key | None:
    """Return the master key if ``password`` opens ``key_file``, else None. Raise
    IntegrityError naming the file if it opens but does not hold a master key in restic's
    shape (``{"mac":{"k","r"},"encrypt"}``, base64 of 16, 16 and 32 bytes)."""
    what = f"keys/{key_file.id}"
    user_key = derive(password, key_file.salt, key_file.params)
    try:
        plain = user_key.open(key_file.data, what=what)
    except IntegrityError:
        return None
    try:
        obj = as_object(gojson.loads(plain), "data")
        mac = as_object(obj.get("mac"), "data.mac")
        parts = [_base64(mac.get("k"), "data.mac.k"), _base64(mac.get("r"), "data.mac.r"),
                 _base64(obj.get("encrypt"), "data.encrypt")]
        for part, field, size in zip(parts, ("data.mac.k", "data.mac.r", "data.encrypt"),
                                     (16, 16, 32), strict=True):
            if len(part) != size:
                raise FieldError(field, f"must be {size} bytes, not {len(part)}")
    except ValueError as exc:  # FieldError included
        raise IntegrityError(f"{what}: malformed master key: {first_line(exc)}") from None
    return Key(encrypt=parts[2], mac_k=parts[0], mac_r=parts[1])


def find_key(storage: Storage, password: str, key_hint: str | None = None) -> tuple[Key, str]:
    """Try every key file (the hinted one first); return (master key, key id).

    A hint that is a whole key id (64 hex digits, as the CLI remembers it) is read directly,
    without listing the key files first: one round trip less on an object store; only if it
    is missing or does not open are the others listed. Raise WrongPassword if none opens
    with ``password``.
    """
    malformed: IntegrityError | None = None
    tried = ""
    if key_hint and len(key_hint) == 64 and all(c in _HEX for c in key_hint):
        tried = key_hint
        try:
            master = _open_named(storage, key_hint, password)
        except NotFound:
            master = None
        except IntegrityError as exc:
            malformed, master = exc, None
        if master is not None:
            return master, key_hint
    names = [info.name for info in storage.list(FileType.KEY) if info.name != tried]
    if key_hint:
        names.sort(key=lambda n: not n.startswith(key_hint))
    for name in names:
        try:
            master = _open_named(storage, name, password)
        except IntegrityError as exc:
            malformed = malformed or exc  # the password opened it; another key may be good
            continue
        if master is not None:
            return master, name
    if malformed is not None:
        raise malformed
    raise WrongPassword("wrong password or no key found")


_HEX = frozenset("0123456789abcdef")


def _open_named(storage: Storage, name: str, password: str) -> Key | None:
    """Return the master key if ``password`` opens ``keys/<name>``; None if it does not, or
    if the file is damaged or asks for a derivation this machine cannot make. Raise
    IntegrityError if the password opens it but it holds no master key in restic's shape,
    and NotFound if it does not exist."""
    try:
        kf = load_key_file(storage, name)
    except IntegrityError:
        return None
    try:
        return open_key_file(kf, password)
    except (ValueError, MemoryError):
        return None  # a key this machine cannot derive; another key may still open


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
