"""A moto S3 server on 127.0.0.1 for tests and benchmarks: never a real cloud endpoint.

``MotoServer`` runs ``moto_server`` as a subprocess (so that the server does not compete with
the code under test for the GIL) on a free port of the loopback interface, waits until it
answers, and stops it on ``close``. ``s3_env`` gives the environment that makes both
airflow-backup (through s3fs/botocore) and restic talk to it with dummy credentials.

Nothing in here imports ``airflow_backup``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

__all__ = ["MotoServer", "free_port"]

_ACCESS_KEY = "testing-access-key"
_SECRET_KEY = "testing-secret-key"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_server_argv() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


class MotoServer:
    """A running moto server; use as a context manager or call :meth:`close`."""

    def __init__(self, log_path: Path | None = None, start_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._boto = None
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [*_moto_server_argv(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env()},
        )
        deadline = time.monotonic() + start_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with status {self._proc.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers: that is all we need
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("moto_server did not start in time") from None
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        """Environment for clients of this server: endpoint and dummy credentials."""
        return {
            "AWS_ACCESS_KEY_ID": _ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": _SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def _client(self):  # type: ignore[no-untyped-def]
        if self._boto is not None:
            return self._boto
        import boto3

        self._boto = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=_ACCESS_KEY,
            aws_secret_access_key=_SECRET_KEY, region_name="us-east-1",
        )
        return self._boto

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self._client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete every object of the bucket, then the bucket itself."""
        client = self._client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Return every key of the bucket under ``prefix``."""
        client = self._client()
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def restic_url(self, bucket: str, prefix: str) -> str:
        """The same repository as restic names it."""
        return f"s3:{self.endpoint}/{bucket}/{prefix}"

    def close(self) -> None:
        """Stop the server (and wait for it)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
