"""Registration: the entry point, the schema, and what Airflow's CLI shows."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema

import airflow
from airflow_backup.provider import get_provider_info
from conftest import AIRFLOW_BIN


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json")
                        .read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["connection-types"][0]["connection-type"] == "backup_repository"


def _cli(*args: str) -> str:
    proc = subprocess.run([str(AIRFLOW_BIN), *args], capture_output=True, text=True,
                          timeout=120, check=False, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_airflow_providers_list_shows_the_provider() -> None:
    rows = json.loads(_cli("providers", "list", "-o", "json"))
    ours = [r for r in rows if r["package_name"] == "airflow-backup"]
    assert ours and ours[0]["version"] == get_provider_info()["versions"][0]


def test_airflow_registers_the_connection_type_hook_and_notifier() -> None:
    hooks = json.loads(_cli("providers", "hooks", "-o", "json"))
    ours = [h for h in hooks if h["connection_type"] == "backup_repository"]
    assert ours and ours[0]["class"].endswith("BackupRepositoryHook")
    triggers = _cli("providers", "triggers", "-o", "json")
    assert "airflow_backup.provider.triggers.freshness" in triggers
    notifications = _cli("providers", "notifications", "-o", "json")
    assert "BackupNotifier" in notifications


def test_provider_info_declares_the_connection_form_and_every_component() -> None:
    """Airflow >= 3.2 builds the connection form from provider info (no hook import, no
    wtforms); the hook defines no deprecated get_ui_field_behaviour()."""
    from airflow.providers_manager import ProvidersManager

    from airflow_backup.provider.hooks.repository import BackupRepositoryHook

    info = get_provider_info()
    (conn,) = info["connection-types"]
    assert set(conn["conn-fields"]) == {"url", "aws_conn_id", "gcp_conn_id", "wasb_conn_id",
                                        "retry_attempts", "retry_max_time", "lock_wait"}
    assert conn["ui-field-behaviour"]["hidden-fields"] == ["host", "port", "login", "schema"]
    assert {"integrations", "operators", "sensors", "hooks", "asset-uris"} <= set(info)
    assert "get_ui_field_behaviour" not in BackupRepositoryHook.__dict__
    widgets = ProvidersManager()._connection_form_widgets_from_metadata
    assert "extra__backup_repository__url" in widgets
