"""The Backups page (provider/ui) in a real deployment: api-server, scheduler and
dag-processor on a PostgreSQL metadata database, the provider installed (its plugin found
through the ``airflow.plugins`` entry point), a jobs config with two jobs:

* ``files`` — healthy: backed up by ``airflow-backup run``, drilled by ``airflow-backup
  drill``, and given 999 older snapshots of the same tree (1,000 in all) so that the page is
  measured at the size the issue names;
* ``reports`` — its only backup is two days old against an RPO of one hour.

The API test checks the plugin's endpoints: authentication required (401, or the login
redirect for the page), the jobs' states and timelines, and no secret anywhere in what they
return. The browser test (Playwright driving Debian's chromium, headless) signs in, opens
Backups from Airflow's navigation, sees both states, opens the timeline of ``files``,
triggers a restore of its newest snapshot through the page's form and waits for the run to
succeed, runs a drill with the row's button, then compares the restored files with the
originals. Both print the page's timings
(``-s`` shows them); screenshots are written to ``$AIRFLOW_BACKUP_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import signed_in_tab
from scheduler import AirflowStack, ApiClient, airflow_stack

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.operations.tags import is_backup_of, job_tag
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.timefmt import format_time
from airflow_backup.storage.local import LocalStorage
from conftest import KDF, PASSWORD, open_repo

pytestmark = pytest.mark.slow

PASSWORD_ENV = "PAGE_REPO_PASSWORD"
TOKEN_ENV = "PAGE_NOTIFY_TOKEN"
NOTIFY_TOKEN = "notify-token-never-shown-4711"
CLI = Path(sys.executable).parent / "airflow-backup"
SNAPSHOTS = 1000

CONFIG = """\
version: 1
repositories:
  main:
    url: {repo}
    password_env: {password_env}
jobs:
  files:
    description: Airflow's DAG files and plugins
    sources: [{files}]
    repository: main
    rpo: 1d
    drill: {{max_rto: 10m, max_age: 7d}}
    notifications: {{urls: ["json://127.0.0.1:9/${{{token_env}}}"]}}
  reports:
    description: nightly report exports
    sources: [{reports}]
    repository: main
    rpo: 1h
"""

FACTORY_DAG_FILE = """\
from airflow_backup.provider.dags import backup_dags
globals().update(backup_dags("backups.yaml"))
"""


@dataclass
class Deployment:
    stack: AirflowStack
    api: ApiClient
    repo: Path
    files: Path
    tmp: Path
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "dag_a.py").write_text("print('a')\n")
    (root / "sub" / "plugin.py").write_text("x = 1\n" * 500)
    (root / "big.bin").write_bytes(os.urandom(300_000))
    return root


def _cli(*args: str, env: dict[str, str], cwd: Path) -> None:
    proc = subprocess.run([str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"airflow-backup {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def _fill_history(repo_dir: Path) -> None:
    """Give job ``files`` 999 snapshots older than its real one (same tree, same tags), and
    job ``reports`` one backup two days old."""
    repo = open_repo(repo_dir)
    real = next(sn for sn in repo.list_snapshots() if is_backup_of(sn, "files"))
    start = datetime.fromtimestamp(real.time_ns / 1e9, UTC)
    assert real.summary is not None
    for i in range(1, SNAPSHOTS):
        # Unchanged re-backups add nothing but a tree now and then.
        added = 2_000 if i % 24 == 0 else 0
        summary = dataclasses.replace(real.summary, data_added=added, data_added_packed=added)
        repo.save_snapshot(dataclasses.replace(
            real, id="", time=format_time(start - timedelta(hours=i)), summary=summary))
    reports = repo_dir.parent / "reports"
    with repo.lock(exclusive=False):
        Archiver(repo).backup(BackupOptions(
            paths=[str(reports)], tags=[job_tag("reports")],
            time=datetime.now(UTC) - timedelta(days=2)))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("backups-page")
    repo_dir = tmp / "repo"
    Repository.init(LocalStorage(str(repo_dir)), PASSWORD, kdf=KDF)
    files, reports = _tree(tmp / "files"), _tree(tmp / "reports")
    home = tmp / "home"
    (home / "dags").mkdir(parents=True)
    config = home / "dags" / "backups.yaml"
    config.write_text(CONFIG.format(repo=repo_dir, password_env=PASSWORD_ENV, files=files,
                                    reports=reports, token_env=TOKEN_ENV))
    (home / "dags" / "backups.py").write_text(FACTORY_DAG_FILE)
    secrets = {PASSWORD_ENV: PASSWORD, TOKEN_ENV: NOTIFY_TOKEN}
    cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
               **secrets, "AIRFLOW_BACKUP_CACHE_DIR": str(tmp / "cache")}
    _cli("run", str(config), "files", env=cli_env, cwd=tmp)
    _cli("drill", str(config), "files", env=cli_env, cwd=tmp)
    _fill_history(repo_dir)
    with airflow_stack(home, "LocalExecutor", **secrets,
                       AIRFLOW__AIRFLOW_BACKUP__JOBS_CONFIG=str(config),
                       AIRFLOW_BACKUP_CACHE_DIR=str(tmp / "cache")) as stack:
        for name in ("dag-processor", "scheduler", "api-server"):
            stack.start(name, name)
        api = ApiClient(stack)
        stack.wait(api.healthy, 120, "the api-server")
        stack.wait(lambda: api.dag("restore__files"), 180, "the restore DAG to be parsed")
        yield Deployment(stack, api, repo_dir, files, tmp)


def _get(stack: AirflowStack, path: str,
         token: str | None = None) -> tuple[int, str, dict[str, str]]:
    """GET without following redirects: status, body, headers."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    req = urllib.request.Request(stack.api_url + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_the_plugin_api_requires_authentication_and_shows_no_secret(
        deployment: Deployment) -> None:
    stack, api = deployment.stack, deployment.api
    for path in ("/backups/api/jobs", "/backups/api/jobs/files"):
        status, _, _ = _get(stack, path)
        assert status == 401, path
        status, _, _ = _get(stack, path, token="not-a-jwt")
        assert status in (401, 403), path
    status, _, headers = _get(stack, "/backups/")
    assert status == 302 and "/auth/login?next=" in headers["location"]

    token = api.token()
    started = time.monotonic()
    status, body, _ = _get(stack, "/backups/api/jobs", token)
    deployment.timings["api_jobs_first"] = time.monotonic() - started
    assert status == 200, body + stack.logs(8000)
    listing = json.loads(body)
    jobs = {j["job"]: j for j in listing["jobs"]}
    assert set(jobs) == {"files", "reports"}
    assert jobs["files"]["state"] == "ok", jobs["files"]["reasons"]
    assert jobs["files"]["snapshot_count"] == SNAPSHOTS
    assert jobs["files"]["drill_count"] == 1 and jobs["files"]["status"]["drill_ok"] is True
    assert jobs["reports"]["state"] == "rpo_breached"
    assert jobs["reports"]["reasons"][0].startswith("RPO breached: newest backup 2.0d old")
    repo_info = jobs["files"]["repositories"][0]
    assert repo_info["healthy"] and repo_info["size"] > 300_000

    started = time.monotonic()
    status, detail_body, _ = _get(stack, "/backups/api/jobs/files", token)
    deployment.timings["api_job_detail_warm"] = time.monotonic() - started
    assert status == 200
    detail = json.loads(detail_body)
    assert len(detail["snapshots"]) == SNAPSHOTS and len(detail["drills"]) == 1
    newest = detail["snapshots"][-1]
    assert newest["added"] and newest["size"] and "job=files" in newest["tags"]
    assert detail["restore_form"]["sources"] == [str(deployment.files)]
    assert detail["dags"]["restore"] == "restore__files"
    assert _get(stack, "/backups/api/jobs/nope", token)[0] == 404

    started = time.monotonic()
    assert _get(stack, "/backups/api/jobs", token)[0] == 200
    deployment.timings["api_jobs_warm"] = time.monotonic() - started
    for text in (body, detail_body, _get(stack, "/backups/", token)[1]):
        for secret in (PASSWORD, NOTIFY_TOKEN, stack.api_password):
            assert secret not in text
    print(f"\nBackups API timings ({SNAPSHOTS} snapshots): "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in deployment.timings.items()))


def _shot(tab: Any, name: str) -> None:
    folder = os.environ.get("AIRFLOW_BACKUP_SCREENSHOTS")
    if folder:
        tab.screenshot(path=str(Path(folder) / name), full_page=False)


def test_the_page_shows_both_jobs_and_restores_a_snapshot_through_its_form(
        deployment: Deployment) -> None:
    from playwright.sync_api import expect

    stack = deployment.stack
    target = deployment.tmp / "restored"
    with signed_in_tab(stack) as tab:
        # Airflow's navigation has the entry; it shows the page inside the UI.
        started = time.monotonic()
        tab.get_by_role("link", name="Backups").or_(
            tab.get_by_role("button", name="Backups")).first.click()
        frame = tab.frame_locator("iframe").first
        files_row = frame.locator("tr[data-job='files']")
        reports_row = frame.locator("tr[data-job='reports']")
        files_row.locator("[data-state='ok']").wait_for()
        deployment.timings["page_open"] = time.monotonic() - started
        frame.locator("body[data-rendered-ms]").wait_for(state="attached")
        deployment.timings["frame_to_data"] = int(frame.locator("body").get_attribute(
            "data-rendered-ms") or 0) / 1000
        expect(reports_row.locator("[data-state]")).to_have_attribute(
            "data-state", "rpo_breached")
        expect(reports_row).to_contain_text("RPO breached")
        expect(files_row).to_contain_text("passed")  # the drill
        _shot(tab, "backups-page.png")

        # The timeline of files: the newest 100 of 1,000 snapshots, the drill history.
        started = time.monotonic()
        files_row.get_by_role("link", name="files").click()
        timeline = frame.locator("#timeline tbody tr")
        expect(timeline).to_have_count(100)
        deployment.timings["timeline_open"] = time.monotonic() - started
        show_all = frame.get_by_role("button", name=f"Show all {SNAPSHOTS} snapshots")
        expect(show_all).to_be_visible()
        expect(frame.locator("#drills tbody tr")).to_have_count(1)
        frame.locator("#detail-title").scroll_into_view_if_needed()
        _shot(tab, "backups-timeline.png")

        # Restore the newest snapshot into a new directory through the page's form.
        newest = timeline.first
        newest.get_by_role("button", name="Restore snapshot").click()
        dialog = frame.get_by_role("dialog")
        dialog.get_by_label("Target", exact=True).fill(str(target))
        expect(dialog.get_by_label("Source")).to_have_value(str(deployment.files))
        dialog.get_by_role("button", name="Trigger restore").click()
        run = frame.locator("#detail-run a.run")
        expect(run).to_be_visible()
        expect(run.locator(".badge")).to_have_text("success", timeout=240_000)
        href = run.get_attribute("href") or ""
        assert "/dags/restore__files/runs/" in href

        # The row's Drill button triggers drill__files; its run is followed to the end. New
        # DAGs start paused (Airflow's default): the row says so until it is unpaused.
        expect(files_row.locator(".paused")).to_contain_text("paused: backup, drill")
        deployment.api.unpause("drill__files")
        tab.reload()
        frame = tab.frame_locator("iframe").first
        files_row = frame.locator("tr[data-job='files']")
        expect(files_row.locator(".paused")).to_contain_text("paused: backup")
        expect(files_row.locator(".paused")).not_to_contain_text("drill")
        files_row.get_by_role("button", name="Drill files now").click()
        drill_run = files_row.locator(".run-slot a.run")
        expect(drill_run).to_have_attribute("href", re.compile("/dags/drill__files/runs/"))
        expect(drill_run.locator(".badge")).to_have_text("success", timeout=240_000)

        # The narrow layout still shows every job and its state.
        tab.set_viewport_size({"width": 420, "height": 900})
        expect(reports_row.locator("[data-state]")).to_be_visible()
        _shot(tab, "backups-narrow.png")

        # Dark mode follows Airflow's (here: the system's, which Airflow follows).
        tab.set_viewport_size({"width": 1280, "height": 900})
        tab.emulate_media(color_scheme="dark")
        expect(frame.locator("html")).to_have_class("dark")
        _shot(tab, "backups-dark.png")

        # The page on its own (no Airflow shell around it), warm.
        started = time.monotonic()
        tab.goto(stack.api_url + "/backups/")
        tab.locator("tr[data-job='reports'] [data-state='rpo_breached']").wait_for()
        deployment.timings["page_direct"] = time.monotonic() - started

    # Restored as restic restores: under the target, at the path it was backed up from.
    root = target / deployment.files.relative_to("/")
    restored = {p.relative_to(root).as_posix(): p.read_bytes()
                for p in root.rglob("*") if p.is_file()}
    original = {p.relative_to(deployment.files).as_posix(): p.read_bytes()
                for p in deployment.files.rglob("*") if p.is_file()}
    assert restored == original
    print(f"\nBackups page timings ({SNAPSHOTS} snapshots): "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in deployment.timings.items()))
