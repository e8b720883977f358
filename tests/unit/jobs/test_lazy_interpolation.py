"""Lazy ``${VAR}`` interpolation: what the Airflow DAG processor uses, so that a variable
only the workers have does not break the DAGs, while every other mistake still does."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_backup.errors import InvalidConfigFile
from airflow_backup.jobs.load import load_config, load_config_isolated

CONFIG = """
version: 1
repositories:
  main:
    url: ${REPO_URL}
    password_env: REPO_PASSWORD
jobs:
  files:
    sources: ["${DATA_DIR}/exports"]
    repository: main
    schedule: {cron: "0 2 * * *"}
  timed:
    sources: [/srv/timed]
    repository: main
    schedule: {cron: "${TIMED_CRON}"}
  counted:
    sources: [/srv/counted]
    repository: main
    retention: {keep_daily: "${KEEP_DAILY}"}
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(CONFIG)
    return path


def test_lazily_an_unset_variable_is_left_for_the_worker(tmp_path: Path) -> None:
    loaded = load_config_isolated(_config(tmp_path), env={}, lazy=True)
    cfg = loaded.config
    assert cfg.repositories["main"].url == "${REPO_URL}"
    assert cfg.jobs["files"].sources == ["${DATA_DIR}/exports"]
    # A value that must be valid where the DAG is built still breaks its job, naming the
    # variable: the cron of a schedule, an integer.
    assert sorted(loaded.broken) == ["jobs.counted", "jobs.timed"]
    assert any("environment variable TIMED_CRON is not set" in p
               for p in loaded.broken["jobs.timed"])
    assert any("environment variable KEEP_DAILY is not set" in p
               for p in loaded.broken["jobs.counted"])


def test_strictly_the_same_variables_are_problems(tmp_path: Path) -> None:
    """Where a step runs (the CLI, a task on a worker) an unset variable is an error: here
    every job stores into the repository whose URL is unset, so nothing is valid."""
    env = {"TIMED_CRON": "0 3 * * *", "KEEP_DAILY": "7"}
    for load in (load_config, load_config_isolated):
        with pytest.raises(InvalidConfigFile) as info:
            load(_config(tmp_path), env=env)
        assert any(p.startswith("repositories.main.url: environment variable REPO_URL is "
                                "not set") for p in info.value.problems), info.value.problems


def test_set_variables_are_used_either_way(tmp_path: Path) -> None:
    env = {"REPO_URL": "/srv/backup", "DATA_DIR": "/data", "TIMED_CRON": "0 3 * * *",
           "KEEP_DAILY": "7"}
    for lazy in (False, True):
        cfg = load_config_isolated(_config(tmp_path), env=env, lazy=lazy).config
        assert cfg.repositories["main"].url == "/srv/backup"
        assert cfg.jobs["files"].sources == ["/data/exports"]
        assert cfg.jobs["counted"].retention is not None
