"""The ``config`` file: never compressed, validated on load."""

from __future__ import annotations

import json

import pytest

from airflow_backup.errors import IntegrityError
from airflow_backup.repository.config import (
    CONFIG_HANDLE,
    RepoConfig,
    load_config,
    new_config,
    save_config,
)
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.polynomial import is_irreducible
from airflow_backup.storage import MemoryStorage

RESTIC_TEST_POL = 0x3DA3358B4DC173


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("version", [1, 2])
def test_round_trip(key: Key, storage: MemoryStorage, version: int) -> None:
    config = new_config(version)
    save_config(storage, key, config)
    assert load_config(storage, key) == config


def test_new_config_is_valid() -> None:
    config = new_config()
    assert config.version == 2
    assert len(bytes.fromhex(config.id)) == 32 and config.id == config.id.lower()
    assert is_irreducible(config.chunker_polynomial)
    assert config.chunker_polynomial.bit_length() == 54
    assert new_config().id != config.id


def test_config_is_plain_json_in_v2(key: Key, storage: MemoryStorage) -> None:
    config = RepoConfig(2, "ab" * 32, RESTIC_TEST_POL)
    save_config(storage, key, config)
    plain = key.open(storage.load(CONFIG_HANDLE))
    assert plain[:1] == b"{"  # no 0x02 version byte, no zstd
    assert plain == (b'{"version":2,"id":"' + b"ab" * 32 +
                     b'","chunker_polynomial":"3da3358b4dc173"}')


def _store_raw_config(key: Key, storage: MemoryStorage, obj: object) -> None:
    storage.save(CONFIG_HANDLE, key.seal(json.dumps(obj).encode()))


@pytest.mark.parametrize(("obj", "match"), [
    ({"version": 3, "id": "ab", "chunker_polynomial": "3da3358b4dc173"}, "version 3"),
    ({"version": 0, "id": "ab", "chunker_polynomial": "3da3358b4dc173"}, "version 0"),
    ({"version": 2, "id": "ab", "chunker_polynomial": "5"}, "not irreducible"),
    ({"version": 2, "id": "ab", "chunker_polynomial": "xyz"}, "malformed"),
    ({"version": 2, "id": "ab"}, "malformed"),
    (["not", "an", "object"], "malformed"),
])
def test_invalid_configs_are_rejected(key: Key, storage: MemoryStorage, obj: object,
                                      match: str) -> None:
    _store_raw_config(key, storage, obj)
    with pytest.raises(IntegrityError, match=f"config: .*{match}"):
        load_config(storage, key)


def test_restic_style_config_is_accepted(key: Key, storage: MemoryStorage) -> None:
    _store_raw_config(key, storage, {"version": 1, "id": "cd" * 32,
                                     "chunker_polynomial": "3da3358b4dc173"})
    assert load_config(storage, key) == RepoConfig(1, "cd" * 32, RESTIC_TEST_POL)


def test_tampered_config_is_rejected_naming_config(key: Key, storage: MemoryStorage) -> None:
    save_config(storage, key, new_config())
    storage.corrupt(CONFIG_HANDLE, flip_bit(storage.load(CONFIG_HANDLE), 130))
    with pytest.raises(IntegrityError, match="config"):
        load_config(storage, key)


def test_config_of_another_key_is_rejected(storage: MemoryStorage) -> None:
    save_config(storage, Key.random(), new_config())
    with pytest.raises(IntegrityError, match="config"):
        load_config(storage, Key.random())
