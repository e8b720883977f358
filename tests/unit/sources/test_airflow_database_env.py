"""Inside an Airflow task the supervisor hides the metadata database URL; the airflow source
gets it back for its CLI child, or says exactly what to configure — never a silent fall-back
to Airflow's default SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_backup.errors import SourceUnavailable
from airflow_backup.sources.airflow_metadata import database_env

BLOCKED = "airflow-db-not-allowed:///"
VAR = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def test_outside_tasks_nothing_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "postgresql://airflow@db/airflow")
    assert database_env(str(tmp_path)) == {}


def test_the_workers_value_is_taken_from_an_ancestor_process(tmp_path: Path) -> None:
    # A parent started with the real URL; its child (the "task") sees the blocked one.
    code = (f"import json, os; os.environ[{VAR!r}] = {BLOCKED!r}; "
            "from airflow_backup.sources.airflow_metadata import database_env; "
            f"print(json.dumps(database_env({str(tmp_path)!r})))")
    env = {**os.environ, VAR: "postgresql://airflow@db:5432/airflow"}
    out = subprocess.run(["bash", "-c", f"{sys.executable} -c \"$CODE\"; true"],
                         env={**env, "CODE": code}, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out)[VAR] == "postgresql://airflow@db:5432/airflow"


def test_a_connection_names_the_database(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, BLOCKED)
    monkeypatch.setenv("AIRFLOW_CONN_META", "postgres://af:pw@db:5432/airflow")
    assert database_env(str(tmp_path), "meta")[VAR] == "postgresql://af:pw@db:5432/airflow"


def test_airflow_cfg_configures_it_unless_it_is_the_generated_sqlite_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, BLOCKED)
    monkeypatch.setattr("airflow_backup.sources.airflow_metadata._parent_pid", lambda pid: 1)
    cfg = tmp_path / "airflow.cfg"
    cfg.write_text(f"[database]\nsql_alchemy_conn = sqlite:///{tmp_path}/airflow.db\n")
    with pytest.raises(SourceUnavailable) as info:
        database_env(str(tmp_path))
    assert str(info.value).startswith("inside an Airflow task the metadata database URL is "
                                      "hidden from tasks and could not be found: name an "
                                      "Airflow connection that holds it")
    (tmp_path / "airflow.db").write_bytes(b"")
    assert database_env(str(tmp_path)) == {VAR: None, "AIRFLOW__CORE__SQL_ALCHEMY_CONN": None}
    cfg.write_text("[database]\nsql_alchemy_conn = postgresql://af@db/airflow\n")
    (tmp_path / "airflow.db").unlink()
    assert database_env(str(tmp_path))[VAR] is None
