"""Where a remote repository's key file was last seen, so its key derivation can start early.

A remote repository (S3, SFTP, …) cannot be asked for its key file before the storage
library has loaded, which takes 0.3–0.4 s for s3fs, and scrypt then takes as long again. The
salt and cost parameters of the key file that opened the repository last time are kept in
the local cache directory, under a name derived from the repository URL, so that
:mod:`airflow_backup.cli.start` can start scrypt while the rest loads. The hint holds only
what the repository stores in the clear (salt, N, r, p, the key file's id); a stale or
missing hint costs nothing but the early derivation, because
:func:`airflow_backup.repository.keys.derive` takes an early result only for exactly the
inputs it needs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

# Only the standard library at the top (kdf and cachedir have nothing else): cli/start.py
# reads the hint before the rest of the package loads, and scrypt starts only after it.
from airflow_backup.cachedir import resolve_cache_root
from airflow_backup.repository.kdf import KdfParams

if TYPE_CHECKING:
    from airflow_backup.storage.base import Storage

__all__ = ["KeyHint", "read_key_hint", "remember_key"]

KeyHint = tuple[str, bytes, KdfParams]


def _hint_path(url: str, cache_dir: str = "") -> Path:
    root = resolve_cache_root(cache_dir)
    # The query string holds options (retries, region) that do not change the repository.
    name = hashlib.sha256(url.partition("?")[0].encode()).hexdigest()[:32]
    return root / "key-hints" / f"{name}.json"


def read_key_hint(url: str, cache_dir: str = "") -> KeyHint | None:
    """Given a repository URL, return (key id, salt, cost parameters) of the key file that
    last opened it here, or None if there is no readable hint. Never raises."""
    try:
        obj = json.loads(_hint_path(url, cache_dir).read_text(encoding="utf-8"))
        return (str(obj["id"]), base64.b64decode(obj["salt"]),
                KdfParams(int(obj["N"]), int(obj["r"]), int(obj["p"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_key(url: str, storage: Storage, key_id: str, cache_dir: str = "") -> None:
    """Record the key file ``key_id`` of ``storage`` as the hint for ``url`` unless it is
    already the hint. Best effort: a failure to read the key file or to write the hint is
    ignored (the next run derives as usual).

    The key file is read through ``storage``: the metadata cache that
    :func:`~airflow_backup.operations.spec.open_repository` puts there holds the key file
    that opened the repository in memory, so reading it again costs no request."""
    hint = read_key_hint(url, cache_dir)
    if hint is not None and hint[0] == key_id:
        return
    from airflow_backup.repository.keys import load_key_file
    from airflow_backup.storage.atomic import replace_file

    path = _hint_path(url, cache_dir)
    try:
        key_file = load_key_file(storage, key_id)
        text = json.dumps({"id": key_id, "salt": base64.b64encode(key_file.salt).decode(),
                           "N": key_file.params.n, "r": key_file.params.r,
                           "p": key_file.params.p})
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except Exception:  # a hint is an optimisation, never a failure
        return
    with contextlib.suppress(OSError):
        replace_file(path, text.encode())
