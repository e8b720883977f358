"""Open a repository from its storage, with the metadata cache switched on when asked.

The cache directory is keyed by the repository id, which is inside the encrypted config, so
the cache can only be added after the key has opened the config: this module does that, and
tells the cache which packs hold trees (only the index knows).
"""

from __future__ import annotations

import os

from airflow_backup.repository.index import Index
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.base import FileType, Handle, Storage
from airflow_backup.storage.compose import with_cache

__all__ = ["TreePacks", "open_cached"]


class TreePacks:
    """``is_tree_pack(name)`` over an Index: the set is rebuilt when the index grows."""

    def __init__(self, index: Index) -> None:
        self._index = index
        self._size = -1
        self._packs: set[str] = set()

    def __call__(self, name: str) -> bool:
        if name not in self._packs and len(self._index) != self._size:
            self._size = len(self._index)
            self._packs = {p.hex() for p in self._index.packs(BlobType.TREE)}
        return name in self._packs


def open_cached(storage: Storage, password: str, key_hint: str | None = None, *,
                cache: bool = False, cache_root: str | os.PathLike[str] | None = None,
                sealed_config: bytes | None = None) -> Repository:
    """Open the repository in ``storage``; with ``cache``, serve index, snapshot and tree
    loads from the local cache (``cache_root`` or the default). ``sealed_config``: the config
    file if the caller loaded it already (see :meth:`Repository.open`). Raise
    RepositoryNotFound, WrongPassword or a storage error."""
    repo = Repository.open(storage, password, key_hint, sealed_config=sealed_config)
    if cache:
        cached = with_cache(storage, repo.config.id, cache_root=cache_root,
                            is_tree_pack=TreePacks(repo.index))
        if repo.key_file_data is not None:
            # The CLI reads the key file again to remember its salt (cli/keyhint.py): served
            # from memory, not fetched a second time.
            cached.hold(Handle(FileType.KEY, repo.key_id), repo.key_file_data)
        repo.storage = cached
    return repo
