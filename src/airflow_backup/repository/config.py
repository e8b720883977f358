"""The repository's ``config`` file: version, id and chunker polynomial."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from airflow_backup.errors import IntegrityError
from airflow_backup.repository import gojson
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.polynomial import is_irreducible, random_polynomial
from airflow_backup.repository.unpacked import decode_unpacked, encode_unpacked
from airflow_backup.storage.base import FileType, Handle, Storage

__all__ = ["CONFIG_HANDLE", "RepoConfig", "load_config", "new_config", "save_config"]

CONFIG_HANDLE = Handle(FileType.CONFIG, "config")
MIN_VERSION = 1
MAX_VERSION = 2


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """The decrypted ``config``: format version, repository id, chunker polynomial."""

    version: int
    id: str
    chunker_polynomial: int

    def to_json(self) -> dict[str, object]:
        """Return the config in restic's JSON shape."""
        return {
            "version": self.version,
            "id": self.id,
            "chunker_polynomial": f"{self.chunker_polynomial:x}",
        }


def new_config(version: int = 2) -> RepoConfig:
    """Return a config with a random id and a random irreducible polynomial."""
    return RepoConfig(version, os.urandom(32).hex(), random_polynomial())


def save_config(storage: Storage, key: Key, config: RepoConfig) -> None:
    """Seal and store ``config`` (never compressed, as restic requires)."""
    sealed = encode_unpacked(key, gojson.dumps(config.to_json()), config.version, False)
    storage.save(CONFIG_HANDLE, sealed)


def load_config(storage: Storage, key: Key) -> RepoConfig:
    """Load and validate ``config``. Raise IntegrityError if it is damaged or unsupported."""
    raw = decode_unpacked(key, storage.load(CONFIG_HANDLE), "config")
    try:
        obj = json.loads(raw)
        config = RepoConfig(
            int(obj["version"]), str(obj["id"]), int(str(obj["chunker_polynomial"]), 16)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError("config: malformed") from exc
    if not MIN_VERSION <= config.version <= MAX_VERSION:
        raise IntegrityError(f"config: unsupported repository version {config.version}")
    if not is_irreducible(config.chunker_polynomial):
        raise IntegrityError("config: chunker polynomial is not irreducible")
    return config
