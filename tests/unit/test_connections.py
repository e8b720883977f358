"""Airflow connections read without Airflow: AIRFLOW_CONN_<ID> in JSON and URI form."""

from __future__ import annotations

import json

import pytest

from airflow_backup.connections import from_environment, get_connection
from airflow_backup.errors import ConfigError


def test_json_and_uri_forms_give_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REPO_JSON", json.dumps({
        "conn_type": "backup_repository", "host": "/srv/Repo", "password": "p@ss:w/rd",
        "extra": {"retry": {"retry_attempts": "2"}}}))
    monkeypatch.setenv("AIRFLOW_CONN_REPO_URI",
                       "backup-repository://:p%40ss%3Aw%2Frd@%2Fsrv%2FRepo/?__extra__="
                       "%7B%22retry%22%3A+%7B%22retry_attempts%22%3A+%222%22%7D%7D")
    a, b = get_connection("repo_json"), from_environment("repo_uri")
    assert (a.conn_type, a.host, a.password, a.extra) == (
        "backup_repository", "/srv/Repo", "p@ss:w/rd", {"retry": {"retry_attempts": "2"}})
    assert (b.conn_type, b.host, b.password, b.extra) == (a.conn_type, a.host, a.password,
                                                          a.extra)
    assert "p@ss" not in repr(a)


def test_database_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_META", "postgres://airflow:s%2Fcret@db.internal:5433/af")
    assert from_environment("meta").database_url() == \
        "postgresql://airflow:s%2Fcret@db.internal:5433/af"
    monkeypatch.setenv("AIRFLOW_CONN_LITE", json.dumps({"conn_type": "sqlite",
                                                        "host": "/var/af/airflow.db"}))
    assert from_environment("lite").database_url() == "sqlite:////var/af/airflow.db"
    monkeypatch.setenv("AIRFLOW_CONN_WEB", "http://example.com")
    with pytest.raises(ConfigError, match="not a postgres, mysql or sqlite database"):
        from_environment("web").database_url()


@pytest.mark.parametrize("value, message", [
    ("", "is not defined: outside Airflow, set AIRFLOW_CONN_NOPE"),
    ("{not json", "AIRFLOW_CONN_NOPE is neither a JSON object nor a connection URI"),
    ('{"extra": "[1]"}', "its extra must be a JSON object"),
    ("x://h:notaport/", "AIRFLOW_CONN_NOPE is neither a JSON object nor a connection URI"),
])
def test_missing_or_malformed_variables_are_named_never_shown(
        monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOPE", value)
    with pytest.raises(ConfigError) as info:
        from_environment("nope")
    assert message in str(info.value)
    if value:
        assert value not in str(info.value)
