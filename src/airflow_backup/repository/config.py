"""The repository's ``config`` file: version, id and chunker polynomial."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from airflow_backup.errors import IntegrityError, first_line
from airflow_backup.repository import gojson
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.gojson import (
    U64_MAX,
    FieldError,
    as_int,
    as_object,
    as_str,
    describe,
)
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
    """Load and validate ``config``. Raise IntegrityError naming the field if it is damaged,
    malformed or unsupported.

    As restic reads it: ``version`` an integer 1 or 2, ``chunker_polynomial`` hex digits of
    a uint64 (no sign or prefix, as Go's ``ParseUint``) that is irreducible, and ``id`` the
    repository id, 64 hex digits.
    """
    raw = decode_unpacked(key, storage.load(CONFIG_HANDLE), "config")
    try:
        obj = as_object(gojson.loads(raw), "")
    except FieldError as exc:
        raise IntegrityError(f"config: malformed: {exc}") from exc
    except ValueError as exc:
        raise IntegrityError(f"config: malformed: invalid JSON: {first_line(exc)}") from exc
    try:
        version = as_int(_required(obj, "version"), "version", -U64_MAX, U64_MAX)
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise IntegrityError(f"config: unsupported repository version {version}")
        pol_text = as_str(_required(obj, "chunker_polynomial"), "chunker_polynomial")
        if not _POLYNOMIAL.fullmatch(pol_text):
            raise FieldError("chunker_polynomial",
                             f"must be up to 16 hex digits, not {describe(pol_text)}")
        polynomial = int(pol_text, 16)
        if not is_irreducible(polynomial):
            raise IntegrityError("config: chunker polynomial is not irreducible")
        repo_id = as_str(_required(obj, "id"), "id")
        if not _REPO_ID.fullmatch(repo_id):
            raise FieldError("id", f"must be 64 hex digits, not {describe(repo_id)}")
    except FieldError as exc:
        raise IntegrityError(f"config: malformed: {exc}") from exc
    return RepoConfig(version, repo_id, polynomial)


_POLYNOMIAL = re.compile("[0-9a-fA-F]{1,16}")
_REPO_ID = re.compile("[0-9a-fA-F]{64}")


def _required(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise FieldError(name, "missing")
    return value
