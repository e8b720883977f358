"""The walk-through in docs/lifecycle.md runs as written and does what the text says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import FAST_KDF

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"
DEMO = "/tmp/airflow-backup-lifecycle"


@pytest.mark.slow
def test_walkthrough_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    script = "set -eu\n" + "\n".join(blocks).replace(DEMO, str(tmp_path / "demo"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["AIRFLOW_BACKUP_KDF_PARAMS"] = FAST_KDF
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "report of 2024-03-09" in proc.stdout                 # dump --as-of
    restored = (tmp_path / "demo" / "restored").rglob("report.txt")
    assert [p.read_text() for p in restored] == ["report of 2024-03-09\n"]
    assert "remove 7 snapshots" in proc.stdout                    # the policy as described
    assert "check failed with exit status 1" in proc.stdout       # the damage is found
    assert "breaks:" in proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("wrote") or \
        "nothing to prune" in proc.stdout.splitlines()[-1]
