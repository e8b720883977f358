"""PostgreSQL clusters of a test's own: initdb into a temp directory, started on a free port.

Tests that must configure the server, or that fill it with something as large as the
regression database, use one instead of the machine's shared server. The server runs as
the ``postgres`` OS user (initdb refuses root); trust authentication on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.tools import in_ci

__all__ = ["Cluster", "own_cluster"]

BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its port, data directory and the directory holding both (which
    the server's OS user can write to)."""

    port: int
    data: Path
    base: Path

    def url(self, database: str = "postgres") -> str:
        """Return the airflow-backup source URL of ``database`` on this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """Return a libpq connection string for ``database``."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else list(argv)


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """Create, start and finally stop and remove a cluster in a new temp directory (outside
    pytest's, which the ``postgres`` user cannot enter)."""
    if not (BIN / "initdb").exists():
        message = f"{BIN}/initdb not found (the postgresql-15 server package)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="airflow-backup-pg-"))
    if os.getuid() == 0:
        shutil.chown(base, "postgres")
    data, port = base / "data", _free_port()
    subprocess.run(_as_postgres(str(BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
                   check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"),
                                "-w", "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                                "-c fsync=off -c max_connections=60", "start"),
                   check=True, capture_output=True, timeout=120)
    try:
        yield Cluster(port, data, base)
    finally:
        subprocess.run(_as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                    "-w", "stop"), check=False, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
