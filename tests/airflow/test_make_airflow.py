"""`make airflow` (scripts/airflow.sh): airflow standalone comes up with the example DAGs."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_make_airflow_starts_standalone_with_the_generated_dags(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_BACKUP_DEMO_DIR=str(tmp_path / "demo"), AIRFLOW_PORT=str(port),
               AIRFLOW_SMOKE="1")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "airflow.sh")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"Airflow is running: http://localhost:{port}" in out
    assert "Log in as:          admin / " in out
    assert "Import errors:      0" in out
    dags = next(line for line in out.splitlines() if line.strip().startswith("DAGs:")).split()
    assert {"backup__quickstart", "drill__quickstart", "maintenance__local"} <= set(dags)
    # The quickstart data and repository exist, and every component was stopped.
    assert (tmp_path / "demo" / "jobs-repo" / "config").is_file()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
