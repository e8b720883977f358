"""Fixtures for the engine's unit tests.

Key derivation is made cheap before any test runs: ``keys.calibrate`` honours
``AIRFLOW_BACKUP_KDF_PARAMS`` (the real restic calibration takes ~0.5 s per key).
"""

from __future__ import annotations

import os

os.environ.setdefault("AIRFLOW_BACKUP_KDF_PARAMS", "1024,8,1")

import pytest

from airflow_backup.repository.crypto import Key
from airflow_backup.storage import MemoryStorage


@pytest.fixture
def key() -> Key:
    """A fresh random master key."""
    return Key.random()


@pytest.fixture
def storage() -> MemoryStorage:
    """An empty in-memory store."""
    return MemoryStorage()

