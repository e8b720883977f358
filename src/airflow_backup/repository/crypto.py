"""restic's authenticated encryption: AES-256-CTR plus Poly1305-AES, laid out IV‖CT‖MAC.

The MAC key is ``(K, R)``; the Poly1305 one-time key is ``R ‖ AES-128_K(nonce)``, so the
16-byte nonce serves both as the CTR counter block and, encrypted, as Poly1305's ``s``.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

from airflow_backup.errors import IntegrityError
from airflow_backup.jsontypes import JSONObject, JSONValue

__all__ = ["EXTENSION", "IV_SIZE", "MAC_SIZE", "Key"]

IV_SIZE = 16
MAC_SIZE = 16
EXTENSION = IV_SIZE + MAC_SIZE


@dataclass(frozen=True, slots=True)
class Key:
    """A master or user key: 32 bytes for AES-256 and a 32-byte MAC key ``(k, r)``."""

    encrypt: bytes
    mac_k: bytes
    mac_r: bytes

    def __post_init__(self) -> None:
        if len(self.encrypt) != 32 or len(self.mac_k) != 16 or len(self.mac_r) != 16:
            raise ValueError("invalid key sizes")

    def __repr__(self) -> str:
        return "Key(<secret>)"

    @classmethod
    def random(cls) -> Key:
        """Return a new key from the OS's CSPRNG."""
        return cls(os.urandom(32), os.urandom(16), os.urandom(16))

    @classmethod
    def from_kdf(cls, derived: bytes) -> Key:
        """Given 64 bytes from scrypt, return the user key restic derives from them."""
        if len(derived) != 64:
            raise ValueError("derived key must be 64 bytes")
        return cls(derived[:32], derived[32:48], derived[48:64])

    def to_json(self) -> JSONObject:
        """Return the key in restic's master-key JSON shape."""
        return {
            "mac": {
                "k": base64.b64encode(self.mac_k).decode(),
                "r": base64.b64encode(self.mac_r).decode(),
            },
            "encrypt": base64.b64encode(self.encrypt).decode(),
        }

    @classmethod
    def from_json(cls, obj: JSONObject) -> Key:
        """Given restic's master-key JSON, return the key. Raise IntegrityError if malformed."""
        try:
            mac = obj["mac"]
            if not isinstance(mac, dict):
                raise TypeError("mac is not an object")
            return cls(_b64(obj["encrypt"]), _b64(mac["k"]), _b64(mac["r"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError("master key has an invalid shape") from exc

    def _mac(self, nonce: bytes, ciphertext: bytes | memoryview) -> bytes:
        return Poly1305.generate_tag(self.mac_r + _ecb_block(self.mac_k, nonce), ciphertext)

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        """Encrypt and authenticate ``plaintext``; return ``IV ‖ CT ‖ MAC``."""
        nonce = _nonce()
        ct = _ctr(self.encrypt, nonce).update(plaintext)
        return b"".join((nonce, ct, self._mac(nonce, ct)))

    def seal_into(self, plaintext: bytes | memoryview, out: memoryview) -> int:
        """Write ``IV ‖ CT ‖ MAC`` of ``plaintext`` to the start of ``out``; return its length
        (``len(plaintext) + EXTENSION``). ``out`` must be at least 15 bytes longer than that
        (the cipher API asks for a block of slack); those bytes are left untouched (CTR
        mode writes exactly one byte per byte of input)."""
        nonce = _nonce()
        n = len(plaintext)
        out[:IV_SIZE] = nonce
        if n:
            _ctr(self.encrypt, nonce).update_into(plaintext, out[IV_SIZE:])
        out[IV_SIZE + n : EXTENSION + n] = self._mac(nonce, out[IV_SIZE : IV_SIZE + n])
        return n + EXTENSION

    def open(self, sealed: bytes | memoryview, what: str = "data") -> bytes:
        """Verify and decrypt ``IV ‖ CT ‖ MAC``. Raise IntegrityError naming ``what`` if the
        MAC does not match or the input is too short."""
        nonce, ct = self._verify(sealed, what)
        return _ctr(self.encrypt, nonce).update(ct)

    def open_into(self, sealed: bytes | memoryview, out: memoryview,
                  what: str = "data") -> memoryview:
        """Like :meth:`open`, but decrypt into ``out`` (at least 15 bytes longer than the
        plaintext) and return the part of ``out`` that holds the plaintext. Spares a fresh
        plaintext buffer per blob when reading many."""
        nonce, ct = self._verify(sealed, what)
        if len(ct):
            _ctr(self.encrypt, nonce).update_into(ct, out)
        return out[: len(ct)]

    def _verify(self, sealed: bytes | memoryview, what: str) -> tuple[bytes, memoryview]:
        """Check the MAC of ``IV ‖ CT ‖ MAC``; return (IV, CT). Raise IntegrityError if it
        does not match or the input is too short."""
        view = memoryview(sealed)
        if len(view) < EXTENSION:
            raise IntegrityError(f"{what}: ciphertext too short ({len(view)} bytes)")
        nonce = bytes(view[:IV_SIZE])
        ct = view[IV_SIZE:-MAC_SIZE]
        if not hmac.compare_digest(self._mac(nonce, ct), bytes(view[-MAC_SIZE:])):
            raise IntegrityError(f"{what}: MAC verification failed (wrong key or corrupted data)")
        return nonce, ct


# Sealing or opening a small blob is dominated by per-call set-up, all of it holding the GIL
# (a backup seals a blob per small file and per chunk, its restore opens as many): the AES key
# objects are made once per key, and each thread keeps one cipher context per key and mode.
# The one-block AES-ECB that turns a nonce into Poly1305's ``s`` carries no state from block
# to block; the AES-CTR context is given each blob's nonce with ``reset_nonce``, which also
# restarts its counter (CTR encrypts and decrypts alike, and ``finalize`` would only end the
# context: CTR holds nothing back). Sharing the contexts makes a small blob's seal and open
# markedly cheaper.
def _nonce() -> bytes:
    nonce = os.urandom(IV_SIZE)
    while not any(nonce):  # restic rejects an all-zero nonce
        nonce = os.urandom(IV_SIZE)
    return nonce


@functools.lru_cache(maxsize=32)
def _aes(key: bytes) -> algorithms.AES:
    return algorithms.AES(key)


_THREAD = threading.local()


def _context(kind: str, key: bytes, make: Callable[[], CipherContext]) -> CipherContext:
    """Return this thread's cipher context of ``kind`` for ``key``, made by ``make`` the first
    time. Few keys are ever live at once (a repository's master key, a key file's user key)."""
    contexts: dict[tuple[str, bytes], CipherContext] | None = getattr(_THREAD, "contexts", None)
    if contexts is None:
        contexts = _THREAD.contexts = {}
    ctx = contexts.get((kind, key))
    if ctx is None:
        if len(contexts) >= 16:
            contexts.clear()
        ctx = contexts[(kind, key)] = make()
    return ctx


def _ecb_block(key: bytes, block: bytes) -> bytes:
    return _context("ecb", key, lambda: Cipher(_aes(key), modes.ECB()).encryptor()).update(block)


def _ctr(key: bytes, nonce: bytes) -> CipherContext:
    """Return this thread's AES-CTR context for ``key``, set to start at ``nonce``."""
    ctx = _context("ctr", key, lambda: Cipher(_aes(key), modes.CTR(nonce)).encryptor())
    ctx.reset_nonce(nonce)
    return ctx


def _b64(value: JSONValue) -> bytes:
    if not isinstance(value, str):
        raise TypeError("key part is not a string")
    return base64.b64decode(value)
