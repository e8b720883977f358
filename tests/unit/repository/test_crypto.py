"""restic's authenticated encryption (AES-256-CTR + Poly1305-AES, ``IV ‖ CT ‖ MAC``).

The known-answer tests do not trust the engine: the expected bytes are computed here with
``cryptography`` primitives, or are restic's own test vector and the Poly1305-AES vectors
of Bernstein's paper (as listed in restic's ``internal/crypto/crypto_int_test.go``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.crypto import EXTENSION, IV_SIZE, MAC_SIZE, Key

FAST = settings(max_examples=60, deadline=None)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def reference_seal(enc: bytes, k: bytes, r: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """restic's Encrypt, written from the design document with plain primitives."""
    ctr = Cipher(algorithms.AES(enc), modes.CTR(nonce)).encryptor()
    ct = ctr.update(plaintext) + ctr.finalize()
    ecb = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    s = ecb.update(nonce) + ecb.finalize()
    return nonce + ct + Poly1305.generate_tag(r + s, ct)


# ---- round trip and layout ------------------------------------------------------------


def test_constants() -> None:
    assert (IV_SIZE, MAC_SIZE, EXTENSION) == (16, 16, 32)


@FAST
@given(plaintext=st.binary(max_size=5000))
def test_seal_open_round_trip(plaintext: bytes) -> None:
    key = Key.random()
    sealed = key.seal(plaintext)
    assert len(sealed) == len(plaintext) + 32
    assert key.open(sealed) == plaintext


def test_seal_accepts_memoryview_and_uses_fresh_nonces(key: Key) -> None:
    a = key.seal(memoryview(b"same plaintext"))
    b = key.seal(b"same plaintext")
    assert a[:16] != b[:16]
    assert any(a[:16]) and any(b[:16])
    assert a[16:-16] != b[16:-16]
    assert key.open(memoryview(a)) == key.open(b) == b"same plaintext"


def test_empty_plaintext_is_iv_and_mac_only(key: Key) -> None:
    sealed = key.seal(b"")
    assert len(sealed) == 32
    assert key.open(sealed) == b""


# ---- tampering ------------------------------------------------------------------------


def test_every_single_bit_flip_is_detected(key: Key) -> None:
    sealed = key.seal(os.urandom(40))  # 16 IV + 40 CT + 16 MAC = 576 bits, all tried
    for bit in range(len(sealed) * 8):
        with pytest.raises(IntegrityError):
            key.open(flip_bit(sealed, bit))


@FAST
@given(plaintext=st.binary(max_size=300), region=st.sampled_from(["iv", "ct", "mac"]),
       data=st.data())
def test_bit_flip_in_any_region_is_detected(plaintext: bytes, region: str, data: st.DataObject
                                           ) -> None:
    key = Key.random()
    sealed = key.seal(plaintext)
    lo, hi = {"iv": (0, 16), "ct": (16, 16 + len(plaintext)),
              "mac": (16 + len(plaintext), len(sealed))}[region]
    if lo == hi:  # empty plaintext has no ciphertext bytes to flip
        return
    bit = data.draw(st.integers(lo * 8, hi * 8 - 1))
    with pytest.raises(IntegrityError):
        key.open(flip_bit(sealed, bit))


def test_wrong_key_is_rejected(key: Key) -> None:
    sealed = key.seal(b"secret")
    with pytest.raises(IntegrityError):
        Key.random().open(sealed)
    # Only the MAC key authenticates: a different R or K alone must fail.
    with pytest.raises(IntegrityError):
        Key(key.encrypt, key.mac_k, os.urandom(16)).open(sealed)
    with pytest.raises(IntegrityError):
        Key(key.encrypt, os.urandom(16), key.mac_r).open(sealed)


@pytest.mark.parametrize("size", [0, 1, 31])
def test_too_short_input_is_rejected_and_named(key: Key, size: int) -> None:
    with pytest.raises(IntegrityError, match="index/abc"):
        key.open(b"\x01" * size, what="index/abc")


def test_truncation_and_extension_are_rejected(key: Key) -> None:
    sealed = key.seal(b"some plaintext of moderate length")
    for bad in (sealed[:-1], sealed[1:], sealed + b"\x00", sealed[:16] + sealed[17:]):
        with pytest.raises(IntegrityError):
            key.open(bad)


def test_failure_message_names_the_file(key: Key) -> None:
    sealed = flip_bit(key.seal(b"x"), 200)
    with pytest.raises(IntegrityError, match="snapshots/0123"):
        key.open(sealed, what="snapshots/0123")


# ---- known answers --------------------------------------------------------------------


def test_open_matches_reference_implementation() -> None:
    enc, k, r = bytes(range(32)), bytes(range(100, 116)), bytes(range(200, 216))
    nonce = bytes.fromhex("000102030405060708090a0b0c0dfffe")  # counter wraps the low bytes
    plaintext = b"restic known answer " * 7  # several CTR blocks
    sealed = reference_seal(enc, k, r, nonce, plaintext)
    assert Key(enc, k, r).open(sealed) == plaintext


def test_seal_matches_reference_implementation() -> None:
    enc, k, r = os.urandom(32), os.urandom(16), os.urandom(16)
    plaintext = os.urandom(100)
    sealed = Key(enc, k, r).seal(plaintext)
    nonce = sealed[:16]
    assert sealed == reference_seal(enc, k, r, nonce, plaintext)


@FAST
@given(sizes=st.lists(st.integers(0, 70), min_size=2, max_size=8))
def test_reused_cipher_context_matches_a_fresh_one(sizes: list[int]) -> None:
    """Each thread keeps one CTR context per key and gives it the next blob's nonce; a
    blob that ends mid-block must not leave counter state behind for the next one."""
    enc, k, r = os.urandom(32), os.urandom(16), os.urandom(16)
    key = Key(enc, k, r)
    out = memoryview(bytearray(200))
    for size in sizes:
        plaintext = os.urandom(size)
        sealed = key.seal(plaintext)
        assert sealed == reference_seal(enc, k, r, sealed[:16], plaintext)
        into = memoryview(bytearray(size + 64))
        n = key.seal_into(plaintext, into)
        assert bytes(into[:n]) == reference_seal(enc, k, r, bytes(into[:16]), plaintext)
        assert key.open(sealed) == plaintext
        assert bytes(key.open_into(bytes(into[:n]), out)) == plaintext


def test_threads_do_not_share_a_cipher_context() -> None:
    key = Key.random()
    blobs = [os.urandom(n) for n in range(1, 400)]
    sealed = [key.seal(b) for b in blobs]

    def open_all(_: int) -> bool:
        return all(key.open(s) == b for s, b in zip(sealed, blobs, strict=True))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(open_all, range(16)))


def test_restic_test_vector() -> None:
    # internal/crypto/crypto_int_test.go, testValues[0]
    key = Key(
        bytes.fromhex("303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef"),
        bytes.fromhex("ef4d8824cb80b2bcc5fbff8a9b12a42c"),
        bytes.fromhex("cc8d4b948ee0ebfe1d415de921d10353"),
    )
    sealed = bytes.fromhex(
        "69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf"
        "3f75d8c3cc75dddf8750"
    )
    assert key.open(sealed) == b"Dies ist ein Test!"


# Poly1305-AES vectors (msg, r, k, nonce, mac) from http://cr.yp.to/mac/poly1305-20050329.pdf
POLY1305_AES = [
    ("f3f6", "851fc40c3467ac0be05cc20404f3f700", "ec074c835580741701425b623235add6",
     "fb447350c4e868c52ac3275cf9d4327e", "f4c633c3044fc145f84f335cb81953de"),
    ("", "a0f3080000f46400d0c7e9076c834403", "75deaa25c09f208e1dc4ce6b5cad3fbf",
     "61ee09218d29b0aaed7e154a2c5509cc", "dd3fab2251f11ac759f0887129cc2ee7"),
    ("663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136",
     "48443d0bb0d21109c89a100b5ce2c208", "6acb5f61a7176dd320c5c1eb2edcdc74",
     "ae212a55399729595dea458bc621ff0e", "0ee1c16bb73f0f4fd19881753c01cdbe"),
]


@pytest.mark.parametrize(("msg", "r", "k", "nonce", "mac"), POLY1305_AES)
def test_poly1305_aes_vectors(msg: str, r: str, k: str, nonce: str, mac: str) -> None:
    # open() verifies MAC = Poly1305(r ‖ AES_k(nonce), ct) before decrypting anything.
    key = Key(os.urandom(32), bytes.fromhex(k), bytes.fromhex(r))
    sealed = bytes.fromhex(nonce) + bytes.fromhex(msg) + bytes.fromhex(mac)
    assert len(key.open(sealed)) == len(msg) // 2
    with pytest.raises(IntegrityError):
        key.open(flip_bit(sealed, len(sealed) * 8 - 1))


# ---- key material ---------------------------------------------------------------------


def test_from_kdf_splits_like_restic() -> None:
    derived = bytes(range(64))
    key = Key.from_kdf(derived)
    assert key.encrypt == derived[:32]
    assert key.mac_k == derived[32:48]
    assert key.mac_r == derived[48:]
    with pytest.raises(ValueError):
        Key.from_kdf(derived[:63])


def test_invalid_key_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        Key(b"\0" * 31, b"\0" * 16, b"\0" * 16)
    with pytest.raises(ValueError):
        Key(b"\0" * 32, b"\0" * 15, b"\0" * 16)


def test_master_key_json_round_trip(key: Key) -> None:
    obj = key.to_json()
    assert set(obj) == {"mac", "encrypt"} and set(obj["mac"]) == {"k", "r"}
    assert Key.from_json(obj) == key


@pytest.mark.parametrize("obj", [{}, {"mac": {"k": "AA==", "r": "AA=="}, "encrypt": "AA=="},
                                 {"mac": None, "encrypt": ""}, {"mac": {}, "encrypt": "!!"},
                                 {"mac": [], "encrypt": "AA=="},
                                 {"mac": {"k": 5, "r": "AA=="}, "encrypt": "AA=="}])
def test_malformed_master_key_json(obj: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        Key.from_json(obj)


def test_repr_hides_secrets(key: Key) -> None:
    assert key.encrypt.hex() not in repr(key)
    assert "secret" in repr(key)
