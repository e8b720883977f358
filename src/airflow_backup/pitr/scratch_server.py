"""A scratch PostgreSQL server on a restored data directory, for restore drills.

The server runs as this process's OS user, or as ``postgres`` when this process is root
(PostgreSQL refuses to run as root; :func:`server_os_user`). Everything it touches lives in
one sandbox directory owned by that user: the data directory, the Unix socket, the
``pg_hba.conf`` (``local all all trust``) and the repository password file of its
``restore_command``. It listens on no TCP address, only on the socket inside the sandbox (mode
0700), so nobody but that user (and root) can connect to the restored production data.
Settings given on the command line override the restored configuration: no archiving, no
hot standby (no connections before promotion; no checks of the primary's connection
settings), logging to a file in the sandbox.

``restore_command`` runs this same installation of airflow-backup as the server's OS user
(:func:`cli_for_server`): this interpreter when that is the current user; otherwise the
interpreter named by ``AIRFLOW_BACKUP_SERVER_PYTHON``, else the first of this interpreter and
the system's ``pythonX.Y`` that the server's user can run, with this installation's import
paths in ``PYTHONPATH`` (which that user must be able to read).

No printing; failures raise from the error tree with a one-line cause taken from the
server's log.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_backup.errors import ConfigError, RestoreError, ToolMissing

__all__ = ["RECOVERY_ENDED_EARLY", "ScratchServer", "as_server_user", "cli_for_server",
           "find_server_bin", "free_port", "give_to", "server_os_user"]

#: The log line of a recovery that ran out of WAL before its target (PostgreSQL 13+).
RECOVERY_ENDED_EARLY = "recovery ended before configured recovery target was reached"
#: Variables left out of the server's environment (its restore_command reads the repository
#: password from a file and has no use for other credentials of this process).
_PRIVATE = ("AIRFLOW_BACKUP_PASSWORD", "AIRFLOW_BACKUP_SOURCE_PASSWORD", "RESTIC_PASSWORD",
            "PGPASSWORD", "AIRFLOW_CONN_", "AIRFLOW_BACKUP_REPOSITORY")
#: The longest socket directory: its socket file ``.s.PGSQL.NNNNN`` must fit sun_path.
_SOCKET_DIR_MAX = 90
_BIN_DIRS = ("/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin",
             "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql@{major}/bin")


def server_os_user() -> str | None:
    """Return the OS user a scratch server must run as when it is not this process's:
    ``postgres`` under root, else None (the current user)."""
    return "postgres" if os.geteuid() == 0 else None


def as_server_user(argv: list[str], user: str | None) -> list[str]:
    """Return ``argv`` run as ``user`` (through ``runuser``), or unchanged for None."""
    return ["runuser", "-u", user, "--", *argv] if user else list(argv)


def give_to(path: Path, user: str | None) -> None:
    """Make ``user`` own ``path`` and everything below it (nothing to do for None)."""
    if not user:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    """Return a TCP port number no one listens on now (it names the server's socket)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _major(bindir: Path) -> str:
    try:
        out = subprocess.run([str(bindir / "pg_ctl"), "--version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except OSError:
        return ""
    words = out.split()
    return words[-1].split(".")[0] if words else ""


def find_server_bin(data_dir: Path) -> Path:
    """Return the directory of ``pg_ctl`` and ``postgres`` of the major version the data
    directory was made by (``PG_VERSION``): ``AIRFLOW_BACKUP_PG_BINDIR``, the usual
    per-version directories, or ``pg_ctl`` on PATH when its version matches. Raise
    ToolMissing if none is found."""
    major = (data_dir / "PG_VERSION").read_text().strip()
    override = os.environ.get("AIRFLOW_BACKUP_PG_BINDIR", "")
    candidates = [Path(override)] if override else []
    candidates += [Path(d.format(major=major)) for d in _BIN_DIRS]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for bindir in candidates:
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists() \
                and (override or _major(bindir) == major):
            return bindir
    raise ToolMissing(f"no PostgreSQL {major} server binaries (pg_ctl, postgres) found: "
                      f"install the postgresql-{major} server package or set "
                      "AIRFLOW_BACKUP_PG_BINDIR")


def _import_paths() -> list[str]:
    """This installation's import paths: airflow_backup's and the site directories."""
    import airflow_backup

    own = str(Path(airflow_backup.__file__).resolve().parents[1])
    sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))
             and os.path.isdir(p)]
    return list(dict.fromkeys([own, *sites]))


def cli_for_server(user: str | None) -> tuple[list[str], dict[str, str]]:
    """Return the argv prefix that runs airflow-backup as the server's OS user ``user``
    (None: this user) and the environment it needs (see the module docstring). Raise
    ConfigError if ``user`` cannot run it."""
    if user is None:
        return [sys.executable, "-m", "airflow_backup"], {}
    env = {"PYTHONPATH": os.pathsep.join(_import_paths())}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.environ.get("AIRFLOW_BACKUP_SERVER_PYTHON", ""), sys.executable,
                  os.path.realpath(sys.executable), shutil.which(version) or "",
                  f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    for python in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                as_server_user([python, "-c", "import airflow_backup.cli.main"], user),
                env={**os.environ, **env}, capture_output=True, timeout=120, check=False,
                cwd="/")
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return [python, "-m", "airflow_backup"], env
    raise ConfigError(f"the server's OS user {user} cannot run airflow-backup for "
                      "restore_command: set AIRFLOW_BACKUP_SERVER_PYTHON to a Python "
                      f"{sys.version_info.major}.{sys.version_info.minor} it can run, and "
                      "let it read this installation")


class ScratchServer:
    """A PostgreSQL server on ``data`` inside ``sandbox`` (see the module docstring),
    run with this process's environment without its passwords and Airflow connections,
    plus ``env``."""

    def __init__(self, sandbox: Path, data: Path, *, user: str | None,
                 env: dict[str, str] | None = None) -> None:
        self.sandbox = sandbox
        self.data = data
        self.user = user
        self.bindir = find_server_bin(data)
        self.port = free_port()
        self.socket_dir = sandbox / "sock"
        if len(str(self.socket_dir)) > _SOCKET_DIR_MAX:  # a Unix socket path is ~107 bytes
            self.socket_dir = Path(tempfile.mkdtemp(prefix="abk-sock-"))
        self.log = sandbox / "server.log"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE)},
                    **(env or {})}
        self.running = False

    def prepare(self) -> None:
        """Write the sandbox's own ``pg_hba.conf``/``pg_ident.conf`` and, when the restored
        directory has none (Debian keeps it in /etc), an empty ``postgresql.conf``; give the
        sandbox to the server's user."""
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        give_to(self.socket_dir, self.user)
        (self.sandbox / "pg_hba.conf").write_text("local all all trust\n")
        (self.sandbox / "pg_ident.conf").write_text("")
        conf = self.data / "postgresql.conf"
        if not conf.exists():
            conf.write_text("# written by the airflow-backup drill\n")
        give_to(self.sandbox, self.user)

    def _options(self, extra: dict[str, str]) -> str:
        settings = {"listen_addresses": "", "unix_socket_directories": str(self.socket_dir),
                    "hba_file": str(self.sandbox / "pg_hba.conf"),
                    "ident_file": str(self.sandbox / "pg_ident.conf"),
                    "archive_mode": "off", "hot_standby": "off", "logging_collector": "off",
                    "log_destination": "stderr", "ssl": "off", "cluster_name": "abk-drill",
                    **extra}
        return f"-p {self.port} " + " ".join(
            f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        argv = as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                              self.user)
        try:
            return subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout + 30,
                                  check=False, cwd=str(self.sandbox))
        except subprocess.TimeoutExpired:
            raise RestoreError(f"pg_ctl {args[-1]} did not return within {timeout + 30:.0f}s"
                               ) from None
        except OSError as exc:
            raise ToolMissing(f"cannot run pg_ctl: {exc}") from None

    def start(self, timeout: float, **settings: str) -> None:
        """Start the server and wait (up to ``timeout`` seconds) until ``pg_ctl`` says it is
        up: recovery has reached a consistent state (:meth:`wait_promoted` waits for its
        end). Raise RestoreError with the first FATAL/PANIC line of its log (or pg_ctl's
        message) if it does not start."""
        self.running = True
        done = self._pg_ctl("-l", str(self.log), "-w", "-t", str(int(max(timeout, 10))),
                            "-o", self._options(settings), "start", timeout=timeout)
        if done.returncode != 0:
            cause = self.failure() or " ".join(done.stderr.split())[:300]
            raise RestoreError(f"the scratch server did not start: {cause}")

    def failure(self) -> str:
        """Return the first FATAL or PANIC message of the server's log ('' if none)."""
        for line in self.log_text().splitlines():
            for level in ("FATAL:", "PANIC:"):
                if level in line:
                    return line.split(level, 1)[1].strip()
        return ""

    def log_text(self) -> str:
        """Return the server's log so far ('' if unreadable)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def connect(self, database: str, user: str) -> Any:
        """Return an autocommit psycopg connection to ``database`` as ``user`` over the
        sandbox's socket. Raise RestoreError if it cannot connect."""
        import psycopg

        try:
            return psycopg.connect(host=str(self.socket_dir), port=self.port, user=user,
                                   dbname=database, autocommit=True, connect_timeout=30,
                                   application_name="airflow-backup-drill")
        except psycopg.Error as exc:
            raise RestoreError(f"cannot connect to the scratch server's database "
                               f"{database}: {str(exc).strip().splitlines()[0]}") from None

    def wait_promoted(self, database: str, user: str, timeout: float) -> None:
        """Wait until recovery has ended and ``pg_is_in_recovery()`` is false (connecting
        to ``database`` as ``user``): ``pg_ctl start -w`` returns once recovery is consistent,
        not once it has ended. Raise RestoreError with the log's FATAL/PANIC line if the
        server stops, or if it is still recovering after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with contextlib.closing(self.connect(database, user)) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and row[0] is False:
                    return
            except RestoreError as exc:
                if not (self.data / "postmaster.pid").exists():
                    self.running = False
                    raise RestoreError("the scratch server stopped during recovery: "
                                       + (self.failure() or str(exc))) from None
                if "not accepting connections" not in str(exc) \
                        and "starting up" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise RestoreError(f"the scratch server was still in recovery after "
                                   f"{timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server at once (it is thrown away) and remove a socket directory made
        outside the sandbox; safe to call when it is not up."""
        if self.running:
            self._pg_ctl("-m", "immediate", "-w", "stop", timeout=120)
            self.running = False
        if not self.socket_dir.is_relative_to(self.sandbox):
            shutil.rmtree(self.socket_dir, ignore_errors=True)
