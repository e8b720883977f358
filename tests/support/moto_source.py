"""A moto S3 server on 127.0.0.1 for the object-store *source* tests (not repository storage).

``start_moto_server()`` runs ``moto.server`` as a child process on a free loopback port and
returns it with its endpoint URL; ``stop_moto_server`` ends it. Credentials are dummies that
the tests put in the environment of whatever talks to the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

__all__ = ["MOTO_ENV", "start_moto_server", "stop_moto_server"]

#: Environment for clients of the moto server (dummy credentials, fixed region).
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto_server(timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's S3 server on a free loopback port; return (process, endpoint URL)."""
    port = _free_port()
    env = {**os.environ, **MOTO_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(endpoint + "/", timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.2)
    stop_moto_server(proc)
    raise RuntimeError(f"moto server did not answer on {endpoint} within {timeout}s")


def stop_moto_server(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
