"""Blob stores in restic's layout: the protocol, local and in-memory backends, the registry."""

from airflow_backup.storage.base import FileInfo, FileType, Handle, Storage, object_path
from airflow_backup.storage.local import LocalStorage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.registry import open_storage, register_scheme

__all__ = [
    "FileInfo",
    "FileType",
    "Handle",
    "LocalStorage",
    "MemoryStorage",
    "Storage",
    "object_path",
    "open_storage",
    "register_scheme",
]
