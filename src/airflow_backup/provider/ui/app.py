"""The Backups page's FastAPI app, mounted by Airflow's api-server at ``/backups``.

Routes (all behind Airflow's own authentication: the JWT of the UI's session cookie or an
``Authorization: Bearer`` token, resolved by Airflow's ``get_user``; a job is listed only to
a user its auth manager allows to read the runs of the job's backup DAG):

* ``GET /backups/`` — the page (redirects to Airflow's login when signed out);
* ``GET /backups/api/jobs`` — every job's state, status, repositories and latest DAG runs;
* ``GET /backups/api/jobs/{job}`` — the same for one job, with its snapshot timeline, drill
  history and the restore form's choices.

Triggering a DAG is done by the page through Airflow's public REST API
(``POST /api/v2/dags/{dag_id}/dagRuns``), so it obeys the same rules as the Trigger button.
Nothing returned holds a secret: locations without credentials, sources as runbooks show
them, snapshot metadata and error messages (which never carry secrets).
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote, urlparse

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airflow_backup import __version__
from airflow_backup.jsontypes import JSONObject
from airflow_backup.provider.ui.deployment import (
    Deployment,
    JobEntry,
    dag_ids,
    latest_runs,
    paused_dags,
)

__all__ = ["DEPLOYMENT", "app"]

#: Shared by every request: the configs and the snapshot cache.
DEPLOYMENT = Deployment()

_bearer = HTTPBearer(auto_error=False)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_STATIC = ("backups.js", "backups.css", "icon.svg")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "svg": "image/svg+xml"}


async def current_user(request: Request, bearer: Bearer) -> Any:
    """Return the signed-in Airflow user, as Airflow's own API resolves it (bearer token,
    else the UI's session cookie); raise HTTP 401/403 otherwise."""
    # Imported here: the plugin module is loaded by every Airflow process, this only in
    # the api-server.
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, bearer)


User = Annotated[Any, Depends(current_user)]


def _may_read(user: Any, job: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    return bool(get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_ids(job)["backup"]), user=user))


def _base_path() -> str:
    """The path Airflow is served under ("" at the root), from ``[api] base_url``."""
    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _job_json(entry: JobEntry, runs: dict[str, dict[str, Any]], paused: set[str], *,
              timeline: bool) -> JSONObject:
    ids = dag_ids(entry.name)
    backup_run = runs.get(ids["backup"])
    failed = (f"last backup run {backup_run['run_id']} failed"
              if backup_run and backup_run["state"] == "failed" else "")
    out = DEPLOYMENT.overview(entry, failed).to_json(timeline=timeline)
    out["description"] = entry.job.description or ""
    out["config"] = entry.config_path
    out["dags"] = dict(ids)
    out["runs"] = {kind: runs.get(dag_id) for kind, dag_id in ids.items()}
    out["paused"] = [kind for kind, dag_id in ids.items() if dag_id in paused]
    if timeline:
        out["restore_form"] = entry.restore_form()
    return out


def _visible(user: Any) -> list[JobEntry]:
    return [e for e in DEPLOYMENT.jobs() if _may_read(user, e.name)]


app = FastAPI(title="airflow-backup: Backups", version=__version__, docs_url=None,
              redoc_url=None, openapi_url=None)


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request, bearer: Bearer) -> Response:
    """The page; signed-out visitors are sent to Airflow's login and back."""
    try:
        await current_user(request, bearer)
    except HTTPException:
        here = quote(str(request.url), safe="")
        return RedirectResponse(f"{_base_path()}/auth/login?next={here}", status_code=302)
    html = resources.files(__package__).joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(html.replace("{{BASE}}", _base_path()),
                        headers={"Cache-Control": "no-store"})


@app.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """The page's script and style sheet."""
    if name not in _STATIC:
        raise HTTPException(404, "not found")
    body = resources.files(__package__).joinpath(f"static/{name}").read_bytes()
    return Response(body, media_type=_TYPES[name.rsplit(".", 1)[1]])


@app.get("/api/jobs", response_model=None)
def jobs(user: User) -> JSONObject:
    """Every job the user may see, without timelines, and the configs' problems."""
    started = time.monotonic()
    entries = _visible(user)
    ids = [d for e in entries for d in dag_ids(e.name).values()]
    runs, paused = latest_runs(ids), paused_dags(ids)
    configs: list[Any] = []
    for path, loaded, problem in DEPLOYMENT.configs():
        problems = [problem] if problem else []
        if loaded is not None:
            problems += [f"{part}: {lines[0] if lines else 'invalid'}"
                         for part, lines in sorted(loaded.broken.items())]
        configs.append({"path": path, "problems": problems})
    return {"version": __version__, "generated_at": time.time(), "configs": configs,
            "jobs": [_job_json(e, runs, paused, timeline=False) for e in entries],
            "seconds": round(time.monotonic() - started, 4)}


@app.get("/api/jobs/{job}", response_model=None)
def job(job: str, user: User) -> JSONObject:
    """One job with its snapshot timeline, drill history and restore choices."""
    entry = next((e for e in _visible(user) if e.name == job), None)
    if entry is None:
        raise HTTPException(404, f"no job {job!r}")
    ids = list(dag_ids(job).values())
    return _job_json(entry, latest_runs(ids), paused_dags(ids), timeline=True)
