"""Fixtures of the Airflow provider tests, run by .venv-airflow's pytest (``make test``).

Airflow reads its configuration when first imported, so AIRFLOW_HOME (a temp dir with an
SQLite metadata DB) is set here, before anything imports airflow; ``airflow db migrate`` runs
once per session. Without Airflow installed these tests are not collected, except under
CI=true, where that is an error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME = tempfile.mkdtemp(prefix="airflow-backup-af-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(_HOME) / "dags")

try:
    import airflow  # noqa: F401
except ImportError:
    if os.environ.get("CI", "").strip().lower() == "true":
        raise
    collect_ignore_glob = ["test_*.py"]

from airflow_backup.repository.keys import KdfParams  # noqa: E402
from airflow_backup.repository.repo import Repository  # noqa: E402
from airflow_backup.storage.local import LocalStorage  # noqa: E402

PASSWORD = "drill-password-not-logged"
KDF = KdfParams(1024, 8, 1)
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Iterator[str]:
    """An SQLite metadata DB in a temp AIRFLOW_HOME, migrated once per session."""
    proc = subprocess.run([str(AIRFLOW_BIN), "db", "migrate"], capture_output=True, text=True,
                          timeout=300, check=False, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield _HOME
    shutil.rmtree(_HOME, ignore_errors=True)


def set_connection(conn_id: str, **fields: Any) -> None:
    """Define an Airflow connection through the environment (AIRFLOW_CONN_<ID> as JSON)."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


@pytest.fixture
def repo_conn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A fresh local repository and the connection ``backup_repository_default`` to it."""
    repo_dir = tmp_path / "repo"
    Repository.init(LocalStorage(str(repo_dir)), PASSWORD, kdf=KDF)
    conn_id = "backup_repository_default"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "backup_repository", "host": str(repo_dir), "password": PASSWORD,
        "extra": {"retry": {"retry_attempts": "2", "retry_base_delay": "0"}}}))
    yield conn_id, repo_dir


@pytest.fixture
def data_tree(tmp_path: Path) -> Path:
    """A small tree to back up."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "empty").write_bytes(b"")
    return root


DAGS = Path(_HOME) / "dags"
DAGS.mkdir(parents=True, exist_ok=True)


def load_dag(dag_id: str, body: str) -> Any:
    """Write a DAG file ``<dag_id>.py`` (``body`` defines ``dag``) into the DAGs folder, which
    ``dag.test()`` parses, and return its DAG object."""
    path = DAGS / f"{dag_id}.py"
    path.write_text(body)
    spec = importlib.util.spec_from_file_location(f"testdag_{dag_id}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def open_repo(repo_dir: Path) -> Repository:
    """Open the test repository with the engine (the independent check of what tasks did)."""
    return Repository.open(LocalStorage(str(repo_dir)), PASSWORD)
