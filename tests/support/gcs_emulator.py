"""A Google Cloud Storage emulator (the PyPI package gcp-storage-emulator, pure Python) on
127.0.0.1, serving GCS's JSON API in memory.

Nothing in here imports ``airflow_backup``.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from pathlib import Path

from support.emulators import EmulatorProcess, missing
from support.moto import free_port

__all__ = ["GcsEmulator"]


def _argv() -> list[str]:
    try:
        import gcp_storage_emulator  # noqa: F401
    except ImportError:
        missing("the GCS emulator (PyPI package gcp-storage-emulator) is not installed")
    return [sys.executable, "-m", "gcp_storage_emulator"]


class GcsEmulator(EmulatorProcess):
    """A running GCS emulator; ``endpoint`` is what STORAGE_EMULATOR_HOST would say."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "gcp-storage-emulator",
            [*_argv(), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
             "--quiet"],
            f"http://127.0.0.1:{port}", cwd=workdir, log_path=workdir / "gcs-emulator.log")

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=test", method="POST",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30):
            pass
        return name

    def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Return the names of the bucket's objects under ``prefix``."""
        url = f"{self.endpoint}/storage/v1/b/{bucket}/o?prefix={prefix}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            return [o["name"] for o in json.load(reply).get("items", [])]
