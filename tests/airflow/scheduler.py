"""Real Airflow components as subprocesses, for the end-to-end scheduler tests.

:class:`AirflowStack` gives one Airflow deployment its own AIRFLOW_HOME (a temp dir), its own
PostgreSQL metadata database (``airflow_e2e_<random>`` on the local server, dropped at the
end) and its own environment — independent of the SQLite setup conftest.py made for the
``dag.test()`` tests. It runs ``airflow db migrate``, then starts components (``scheduler``,
``dag-processor``, ``triggerer``, ``api-server``, ``celery worker``) each in its own process
group, logging to ``<home>/<name>.log``, and stops them all (SIGTERM, then SIGKILL).

:class:`ApiClient` talks to the api-server's public REST API (v2) with a JWT from
``/auth/token`` (simple auth manager; the user's password is written to the passwords file
the stack configures, never passed on a command line).

:func:`ensure_postgres` / :func:`ensure_redis` start the local servers when they are down;
without the programs to do so the tests are skipped, except under CI=true where that fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
API_USER = "e2e"
TERMINAL_RUN_STATES = {"success", "failed"}

T = TypeVar("T")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _missing(what: str) -> None:
    """Skip (locally) or fail (under CI=true) for a missing program or service."""
    if _in_ci():
        pytest.fail(f"CI must have {what}")
    pytest.skip(f"needs {what}")


# --- services ------------------------------------------------------------------------------

def _pg_connect(dbname: str = "postgres") -> Any:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname,
                            connect_timeout=3)
    conn.autocommit = True
    return conn


def _pg_admin(statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the server's ``postgres`` database."""
    conn = _pg_connect()
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


def _pg_up() -> bool:
    try:
        _pg_connect().close()
    except Exception:
        return False
    return True


def ensure_postgres() -> None:
    """Make sure the local PostgreSQL answers (start its cluster if it does not)."""
    if _pg_up():
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not shutil.which("pg_ctlcluster") or not versions:
        _missing("a PostgreSQL server (pg_ctlcluster, /etc/postgresql/<version>/main)")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                    "start"], check=False, capture_output=True, timeout=60)
    wait_until(_pg_up, 30, "PostgreSQL to accept connections")


def _redis_ping() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis() -> None:
    """Make sure the local Redis answers (start a non-persistent one if it does not)."""
    if _redis_ping():
        return
    if not shutil.which("redis-server"):
        _missing("redis-server")
    for d in ("/var/lib/redis", "/var/log/redis"):
        os.makedirs(d, exist_ok=True)
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
                    "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
                    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
                   check=False, capture_output=True, timeout=30)
    wait_until(_redis_ping, 30, "Redis to answer PING")


def redis_empty_db() -> int:
    """The number of a Redis database (1-15) holding no keys now, for one test's broker."""
    import redis

    for db in random.sample(range(1, 16), 15):
        if redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).dbsize() == 0:
            return db
    raise AssertionError("no empty Redis database among 1-15")


def redis_forget_queue(db: int, queue: str, prefix: str) -> None:
    """Delete the Celery broker keys of ``queue`` (its messages and bindings) from ``db``;
    then, unless a key names another queue starting with ``prefix`` (a concurrent run that
    picked the same database), also the generic ones kombu left (``_kombu.binding_deadlines``,
    ``unacked*``, pidbox bindings), so that the database is empty again."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)
    rest = list(client.scan_iter())
    if rest and not any(prefix.encode() in key for key in rest):
        client.delete(*rest)


# --- waiting -------------------------------------------------------------------------------

def wait_until(check: Callable[[], T | None], timeout: float, what: str,
               interval: float = 0.5, on_timeout: Callable[[], str] | None = None) -> T:
    """Call ``check`` until it returns something truthy (returned); fail after ``timeout``
    seconds with ``what`` and ``on_timeout()`` (e.g. component logs) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the deployment ------------------------------------------------------------------------

@dataclass
class Component:
    """One started Airflow process (the leader of its own process group)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class AirflowStack:
    """One Airflow deployment: home, metadata database, environment, processes."""

    home: Path
    executor: str
    extra_env: dict[str, str] = field(default_factory=dict)
    db_name: str = field(default_factory=lambda: f"airflow_e2e_{secrets.token_hex(4)}")
    api_port: int = field(default_factory=free_port)
    log_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    api_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    components: list[Component] = field(default_factory=list)
    _db_created: bool = False

    @property
    def dags_folder(self) -> Path:
        return self.home / "dags"

    @property
    def sql_alchemy_conn(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.db_name}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, **more: str) -> dict[str, str]:
        """The components' environment: this process's, minus every AIRFLOW* variable
        conftest.py set for the in-process tests, plus this deployment's configuration."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AIRFLOW") and not k.startswith("PYTEST")}
        passwords = self.home / "simple_auth_manager_passwords.json"
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": self._secret("api"),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            # Parse the (few) DAG files once at start, look for new ones every few seconds.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Log servers (scheduler/LocalExecutor, triggerer) on ports of their own.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_ports[0]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_ports[1]),
        })
        env.update(self.extra_env)
        env.update(more)
        return env

    def _secret(self, name: str) -> str:
        path = self.home / f".secret-{name}"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
        return path.read_text()

    def setup(self) -> None:
        """Create the home, the password file and the database; migrate it."""
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({API_USER: self.api_password}))
        passwords.chmod(0o600)
        _pg_admin(f'CREATE DATABASE "{self.db_name}"')
        self._db_created = True
        started = time.monotonic()
        with open(self.home / "migrate.log", "wb") as log:
            proc = subprocess.run([str(AIRFLOW_BIN), "db", "migrate"], env=self.env(),
                                  stdout=log, stderr=subprocess.STDOUT, timeout=300,
                                  check=False, cwd=self.home)
        assert proc.returncode == 0, (self.home / "migrate.log").read_text()[-3000:]
        self.migrate_seconds = time.monotonic() - started

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Component:
        """Start ``airflow <args>`` as component ``name`` in its own process group."""
        log = self.home / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(AIRFLOW_BIN), *args], env=env or self.env(),
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.home,
                                    start_new_session=True)
        comp = Component(name, proc, log)
        self.components.append(comp)
        return comp

    def check_alive(self) -> None:
        """Fail (with its log) if a component exited."""
        for comp in self.components:
            if comp.proc.poll() is not None:
                raise AssertionError(f"airflow {comp.name} exited with {comp.proc.returncode}:\n"
                                     f"{comp.tail()}")

    def logs(self, chars: int = 2500) -> str:
        """The tail of every component's log (for failure messages)."""
        return "\n".join(f"--- {c.name} ({c.log}) ---\n{c.tail(chars)}"
                         for c in self.components)

    def task_log(self, dag_id: str, run_id: str, task_id: str, trigger: bool = False) -> str:
        """Every attempt's log of one task instance (read from the log folder), or with
        ``trigger`` the triggerer's logs of its triggers (``attempt=N.log.trigger.<id>.log``)."""
        root = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        paths = [p for p in sorted(root.rglob("*.log")) if (".log.trigger." in p.name) == trigger]
        return "\n".join(p.read_text(errors="replace") for p in paths)

    def wait(self, check: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.5) -> T:
        """:func:`wait_until`, also failing as soon as a component died."""
        def checked() -> T | None:
            self.check_alive()
            return check()
        return wait_until(checked, timeout, what, interval, on_timeout=self.logs)

    def stop(self, grace: float = 10) -> None:
        """Stop every component: SIGTERM to it (it stops its own children), then SIGKILL to
        its whole process group — after ``grace`` seconds, or at once if it exited."""
        for comp in reversed(self.components):
            with contextlib.suppress(ProcessLookupError):
                comp.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for comp in reversed(self.components):
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Children (task runners, uvicorn/celery workers) may outlive their leader.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(comp.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=5)

    def drop_database(self) -> None:
        if not self._db_created:
            return
        _pg_admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self._db_created = False

    def close(self) -> None:
        """Stop everything and drop the database (the home is the caller's tmp dir)."""
        try:
            self.stop()
        finally:
            self.drop_database()


@contextlib.contextmanager
def airflow_stack(home: Path, executor: str, **extra_env: str) -> Iterator[AirflowStack]:
    """A migrated :class:`AirflowStack`, closed (processes stopped, DB dropped) on exit."""
    ensure_postgres()
    stack = AirflowStack(home=home, executor=executor, extra_env=extra_env)
    try:
        stack.setup()
        yield stack
    finally:
        stack.close()


# --- REST API ------------------------------------------------------------------------------

class ApiError(AssertionError):
    """An unexpected HTTP status from the api-server."""


class ApiClient:
    """The api-server's public REST API (v2) with a JWT of the stack's admin user."""

    def __init__(self, stack: AirflowStack) -> None:
        self.stack = stack
        self.base = stack.api_url
        self._token: str | None = None

    def _call(self, method: str, path: str, body: Any = None, auth: bool = True,
              ok: tuple[int, ...] = (200, 201)) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if status not in ok:
            raise ApiError(f"{method} {path} -> {status}: {raw[:1000]!r}")
        return json.loads(raw) if raw else None

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (user and password of the simple auth manager)."""
        if self._token is None:
            reply = self._call("POST", "/auth/token", {"username": API_USER,
                                                       "password": self.stack.api_password},
                               auth=False)
            self._token = str(reply["access_token"])
        return self._token

    def healthy(self) -> bool:
        """The api-server answers and reports a healthy metadata database."""
        try:
            reply = self._call("GET", "/api/v2/monitor/health", auth=False)
        except (OSError, ApiError):
            return False
        return bool(reply and reply.get("metadatabase", {}).get("status") == "healthy")

    def get(self, path: str, **query: Any) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True)
        return self._call("GET", path)

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API knows it, or None before the dag-processor stored it."""
        try:
            reply: dict[str, Any] = self._call("GET", f"/api/v2/dags/{dag_id}")
        except ApiError as exc:
            if " -> 404" in str(exc):
                return None
            raise
        return reply

    def unpause(self, dag_id: str) -> None:
        reply = self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        assert reply["is_paused"] is False, reply

    def post(self, path: str, body: Any) -> Any:
        """POST ``body`` (JSON) to ``path``; return the reply."""
        return self._call("POST", path, body)

    def trigger(self, dag_id: str, **conf: Any) -> str:
        """Trigger a manual run now; return its run id."""
        reply = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                           {"logical_date": None, "conf": conf})
        return str(reply["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return reply

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        reply = self.get(f"/api/v2/dags/{dag_id}/dagRuns", order_by="run_after")
        return list(reply["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        reply = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in reply["task_instances"]}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return reply

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (deserialised)."""
        reply = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                         f"/xcomEntries/{key}")
        value = reply["value"]
        return json.loads(value) if isinstance(value, str) else value

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events that triggered an asset-scheduled run."""
        reply = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")
        return list(reply["asset_events"])

    # --- waiting on the deployment ---

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the api-server is healthy and gives a token."""
        self.stack.wait(self.healthy, timeout, "the api-server to be healthy")
        self.token()

    def wait_dags(self, dag_ids: list[str], timeout: float = 90) -> None:
        """Wait until the dag-processor stored every DAG (and so the API knows it)."""
        for dag_id in dag_ids:
            self.stack.wait(lambda d=dag_id: self.dag(d), timeout,  # type: ignore[misc]
                            f"DAG {dag_id} to be parsed")

    def wait_run(self, dag_id: str, run_id: str, timeout: float,
                 on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Wait until the run is finished; return it. ``on_poll`` sees the run each poll."""
        def finished() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run)
            return run if run["state"] in TERMINAL_RUN_STATES else None
        return self.stack.wait(finished, timeout, f"run {dag_id}/{run_id} to finish")

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """Task states and the logs of failed tasks (for assertion messages)."""
        tis = self.task_instances(dag_id, run_id)
        lines = [f"{dag_id}/{run_id}: " + ", ".join(f"{t}={ti['state']}"
                                                    for t, ti in tis.items())]
        for task_id, ti in tis.items():
            if ti["state"] not in ("success", "skipped"):
                lines.append(f"--- log of {task_id} ---\n"
                             f"{self.stack.task_log(dag_id, run_id, task_id)[-4000:]}")
        return "\n".join(lines)
