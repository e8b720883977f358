"""`make demo`'s script on a fresh directory: the file demo and the quickstart job end to end
(run, status, simulated loss, drill, restore --as-of, runbook, then `airflow dags test` of the
generated backup DAG)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import FAST_KDF

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_script_runs_the_quickstart_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_", "DEMO_"))}
    env.update({"AIRFLOW_BACKUP_DEMO_DIR": str(tmp_path / "demo"),
                "AIRFLOW_BACKUP_KDF_PARAMS": FAST_KDF,
                "AIRFLOW_BACKUP_BIN": str(Path(sys.executable).parent / "airflow-backup")})
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "job quickstart: SUCCESS" in out
    assert "drill quickstart: PASSED" in out
    assert "recovered the DAG file and 200 dag_run rows" in out
    runbook = (tmp_path / "demo" / "RUNBOOK.md").read_text()
    assert "## Job `quickstart`" in runbook and "passed" in runbook
    assert (tmp_path / "demo" / "metrics" / "airflow_backup.prom").is_file()
    # The Airflow part (make demo creates .venv-airflow; CI always has it).
    if (ROOT / ".venv-airflow" / "bin" / "airflow").exists() or os.environ.get("CI") == "true":
        assert "dag_id=backup__quickstart state=success" in out
        assert "the Airflow run stored snapshot" in out
