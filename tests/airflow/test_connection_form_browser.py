"""The backup_repository connection form in the Airflow UI, in Debian's chromium driven by
Playwright (headless) against a real api-server: after signing in, the form shows labelled
fields for the repository URL, password, storage connection and retries, hides the generic
Host/Login/Port/Schema, and what it saves opens the repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import signed_in_tab
from scheduler import AirflowStack, ApiClient, airflow_stack
from test_scheduler_e2e import _make_repo

from airflow_backup.connections import ConnectionFields
from airflow_backup.operations.connection_spec import spec_from_connection
from airflow_backup.operations.spec import open_repository
from conftest import PASSWORD

pytestmark = pytest.mark.slow

@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[AirflowStack, Any]]:
    """A signed-in browser page on a running api-server."""
    with airflow_stack(tmp_path / "home", "LocalExecutor") as stack:
        stack.start("api-server", "api-server")
        ApiClient(stack).wait_ready()
        with signed_in_tab(stack) as tab:
            yield stack, tab


def test_the_connection_form_has_labelled_fields_and_saves_a_working_repository(
        page: tuple[AirflowStack, Any], tmp_path: Path) -> None:
    stack, tab = page
    repo_dir = _make_repo(tmp_path / "repo")
    tab.goto(stack.api_url + "/connections")
    tab.get_by_role("button", name="Add Connection").first.click()
    dialog = tab.get_by_role("dialog")
    dialog.get_by_label("Connection ID").fill("ui_repo")
    kind = dialog.get_by_role("combobox")
    kind.click()
    kind.type("airflow-backup")
    kind.press("Enter")
    # Standard fields: only the password (relabelled); no Host, Login, Port or Schema.
    password = dialog.get_by_label("Repository password")
    password.wait_for()
    for generic in ("Host", "Login", "Port", "Schema"):
        assert dialog.get_by_label(generic, exact=True).count() == 0, generic
    # Filled now: the form's sections are an accordion, and opening Extra Fields closes this.
    password.fill(PASSWORD)
    dialog.get_by_text("Extra Fields", exact=True).click()
    # Airflow 3.3's form labels extra fields visibly but its <label for> points elsewhere:
    # each field is found as the input of the field group that shows that label.
    labelled = {label: dialog.get_by_role("group").filter(
        has=tab.get_by_text(label, exact=True)).locator("input") for label in (
        "Repository URL", "Storage connection (aws)",
        "Storage connection (google_cloud_platform)", "Storage connection (wasb)",
        "Storage retry attempts",
        "Storage retry time limit (seconds)", "Lock wait (seconds)")}
    for label, field in labelled.items():
        field.wait_for()  # the section opens with an animation
        assert field.count() == 1, label
    assert dialog.get_by_text("s3://bucket/prefix, gs://…").count() == 1  # the help text
    labelled["Repository URL"].fill(str(repo_dir))
    labelled["Storage retry attempts"].fill("2")
    labelled["Lock wait (seconds)"].fill("30")
    tab.screenshot(path=str(tmp_path / "connection-form.png"), full_page=True)
    dialog.get_by_role("button", name="Save").click()
    tab.get_by_text("ui_repo").first.wait_for()

    saved = ApiClient(stack).get("/api/v2/connections/ui_repo")
    assert saved["conn_type"] == "backup_repository"
    assert saved.get("password"), "the password typed before Extra Fields was opened is kept"
    extra = json.loads(saved["extra"])
    assert extra["url"] == str(repo_dir)
    assert str(extra["retry_attempts"]) == "2" and str(extra["lock_wait"]) == "30"
    # What the form saved is a repository (the password as typed; the API masks it).
    spec = spec_from_connection(ConnectionFields("ui_repo", "backup_repository",
                                                 password=PASSWORD, extra=extra))
    assert spec.retry.max_attempts == 2 and spec.lock_wait == 30.0
    assert open_repository(spec).config.id
    assert PASSWORD not in json.dumps(saved)
