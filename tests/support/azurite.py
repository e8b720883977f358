"""Azurite, Microsoft's Azure Storage emulator (its Blob service), on 127.0.0.1.

``make tools`` installs the npm package into ``.venv/node`` (AZURITE_BIN overrides where it
is; else ``azurite-blob`` on PATH). Each server gets its own account with a random key (so that
tests can check that the key never shows), kept in memory only.

Nothing in here imports ``airflow_backup``.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import uuid
from pathlib import Path

from support.emulators import EmulatorProcess, missing
from support.moto import free_port

__all__ = ["AzuriteServer", "azurite_bin"]

_ROOT = Path(__file__).resolve().parents[2]


def azurite_bin() -> str:
    """Return the azurite-blob executable; skip the test (fail on CI) when it is missing."""
    configured = os.environ.get("AZURITE_BIN")
    if configured:
        return configured
    local = _ROOT / ".venv" / "node" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    missing("Azurite (npm package azurite) is not installed")
    raise AssertionError("unreachable")


class AzuriteServer(EmulatorProcess):
    """A running Azurite Blob service with one account (``account``, ``key``)."""

    def __init__(self, workdir: Path) -> None:
        self.account = f"acct{uuid.uuid4().hex[:10]}"
        self.key = base64.b64encode(secrets.token_bytes(64)).decode()
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "azurite",
            [azurite_bin(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--inMemoryPersistence", "--silent",
             "--skipApiVersionCheck", "--disableTelemetry", "--loose"],
            f"http://127.0.0.1:{port}",
            cwd=workdir, log_path=workdir / "azurite.log",
            env={**os.environ, "AZURITE_ACCOUNTS": f"{self.account}:{self.key}"})

    @property
    def account_url(self) -> str:
        """The account's blob endpoint (path-style, as emulators name accounts)."""
        return f"{self.endpoint}/{self.account}"

    @property
    def connection_string(self) -> str:
        """The account's connection string (it holds the key)."""
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={self.key};BlobEndpoint={self.account_url};")

    def create_container(self, name: str | None = None) -> str:
        """Create a container (a fresh random name by default) and return its name."""
        from azure.storage.blob import BlobServiceClient

        name = name or f"test-{uuid.uuid4().hex[:12]}"
        with BlobServiceClient.from_connection_string(self.connection_string) as client:
            client.create_container(name)
        return name

    def list_blobs(self, container: str, prefix: str = "") -> list[str]:
        """Return the names of the container's blobs under ``prefix``."""
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as client:
            return [b.name for b in client.get_container_client(container)
                    .list_blobs(name_starts_with=prefix or None)]
