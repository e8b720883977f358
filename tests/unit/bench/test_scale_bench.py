"""bench/scale_bench.py end to end at tiny sizes: every case runs for both tools and reports
what the docs quote (a smoke test of the harness, not a timing assertion)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

_PATH = Path(__file__).resolve().parents[3] / "bench" / "scale_bench.py"
_OURS = _PATH.parents[1] / ".venv" / "bin" / "airflow-backup"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scale_bench", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
@pytest.mark.skipif(not _OURS.exists(), reason="no .venv/bin/airflow-backup")
def test_every_case_for_both_tools(tmp_path: Path) -> None:
    scale_bench = _load()
    output = tmp_path / "scale.json"
    code = scale_bench.main(["--files", "200", "--dirs", "20", "--big-gib", "0.0625",
                             "--blobs", "20000", "--snapshots", "50", "--json",
                             "--output", str(output), "--work-dir", str(tmp_path)])
    results = json.loads(output.read_text())
    assert results["errors"] == {}
    assert code == 0, results
    steps = {"files": ("backup", "rebackup"), "bigfile": ("backup",), "index": ("load",),
             "snapshots": ("snapshots_json", "forget_dry_run", "forget")}
    assert set(results["cases"]) == set(steps)
    for case, names in steps.items():
        for tool in ("ours", "restic"):
            for name in names:
                step = results["cases"][case][tool][name]
                assert step["ok"], (case, tool, name, step)
                assert step["seconds"] > 0 and step["max_rss_mib"] > 0, (case, tool, name)
    assert results["cases"]["files"]["data"]["files"] == 200
    assert results["cases"]["index"]["ours"]["load"]["blobs_loaded"] == 20_000
    assert "bytes_per_blob" in results["cases"]["index"]["restic"]["load"]
    for tool in ("ours", "restic"):
        assert results["cases"]["snapshots"][tool]["forget"]["snapshots_left"] == 50
    assert {"rebackup_speedup_vs_restic", "index_bytes_per_blob"} <= set(results["ratios"])
    # The work directory is removed at the end.
    assert [p.name for p in tmp_path.iterdir()] == ["scale.json"]
