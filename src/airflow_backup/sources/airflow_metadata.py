"""Airflow metadata: the metadata database and a logical export of variables, connections and
pools, through the local ``airflow`` CLI (Airflow 3 tasks cannot use the ORM, and its REST API
redacts secrets). The engine never imports Airflow: it runs the CLI as a child process.

URL: ``airflow:///path/to/AIRFLOW_HOME`` (empty path: the ``AIRFLOW_HOME`` of the environment).
Query: ``airflow=/path/to/airflow`` (the CLI; or env ``AIRFLOW_BACKUP_AIRFLOW_BIN``; else
``airflow`` on PATH or beside this interpreter), ``database=false`` (logical export only),
``conn_id=ID`` (an Airflow connection holding the metadata database: needed inside tasks of
deployments that configure the database only in the worker's environment, e.g. Celery; see
:func:`database_env`). The database named by ``sql_alchemy_conn`` is dumped
through the PostgreSQL, MariaDB/MySQL or SQLite source. The snapshot records the Airflow
version, the alembic revision and a fingerprint of the fernet key (never the key).

Restore into ``airflow:///new/home`` imports variables (with descriptions), connections (with
secrets) and pools; it refuses another alembic revision unless ``--force``, and handles keys that
exist with other values per ``--on-existing fail|skip|overwrite``. Restore into a database URL
(``postgresql://…/newdb``, ``sqlite:///…``) restores the metadata database dump instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import sys
from typing import ClassVar
from urllib.parse import unquote

from airflow_backup.errors import (
    ConfigError,
    RestoreError,
    RestoreTargetExists,
    SourceError,
    SourceUnavailable,
    ToolMissing,
    ValidationFailed,
)
from airflow_backup.jsontypes import JSONObject
from airflow_backup.sources.base import (
    DATABASE_SCHEMES,
    DataSource,
    ExportSink,
    RestoreReport,
    SnapshotReader,
    SourceRestoreOptions,
    SourceURL,
    StoredExport,
    TableCheck,
)
from airflow_backup.sources.metadata import (
    ExportFacts,
    SourceDescription,
    ValidationFacts,
    json_object,
)
from airflow_backup.sources.process import Child, Resources, find_tool
from airflow_backup.sources.registry import open_parsed

__all__ = ["AirflowMetadataSource", "sqlalchemy_to_source_url"]

_KINDS = ("variables", "connections", "pools")
_EXPORT_ARGS = {"variables": ["variables", "export"],
                "connections": ["connections", "export", "--file-format", "json"],
                "pools": ["pools", "export"]}


_USERINFO = re.compile(r"(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@")


def sqlalchemy_to_source_url(text: str) -> SourceURL:
    """Turn a SQLAlchemy URL (``postgresql+psycopg2://…``, ``sqlite:////abs.db``) into a
    source URL (password kept, for internal use only)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ConfigError("sql_alchemy_conn is not a URL")
    dialect = scheme.split("+", 1)[0].lower()
    if dialect == "sqlite":
        path = "/" + rest.lstrip("/") if rest.startswith("/") else rest
        return SourceURL("sqlite", path=path.split("?", 1)[0])
    if dialect in DATABASE_SCHEMES:
        # SQLAlchemy's rule, not RFC 3986's: the password runs to the first '@' and may hold
        # a raw '/', '#' or '?' (Airflow accepts such a URL; so must we, without echoing it).
        user, password, host_part = "", "", rest
        m = _USERINFO.match(rest)
        if m:
            user, password = unquote(m["user"]), unquote(m["password"] or "")
            host_part = rest[m.end():]
        parsed = SourceURL.parse(f"{dialect}://{host_part}")
        return SourceURL(parsed.scheme, user, password, parsed.host, parsed.port,
                         parsed.path, ())
    raise ConfigError(f"unsupported metadata database dialect {dialect!r}")


def _digest(items: JSONObject) -> str:
    text = json.dumps(items, sort_keys=True, default=str)
    return "jsonsum:" + hashlib.sha256(text.encode()).hexdigest()[:16]


#: What Airflow 3's task supervisor puts in a task's environment in place of the metadata
#: database URL, so that task code cannot reach the database.
_BLOCKED_DATABASE = "airflow-db-not-allowed:"
_DATABASE_VARS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")


def _ancestor_environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in pairs}


def _parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _configured_elsewhere(home: str) -> bool:
    """Whether the airflow CLI finds its database without the blocked variables: in the
    environment's ``_CMD`` / ``_SECRET`` variants or in ``home``'s airflow.cfg."""
    import configparser

    if any(os.environ.get(f"{k}{suffix}") for k in _DATABASE_VARS
           for suffix in ("_CMD", "_SECRET")):
        return True
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read(os.path.join(home, "airflow.cfg"), encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return False
    for section in ("database", "core"):
        if cfg.get(section, "sql_alchemy_conn_cmd", fallback="").strip() or cfg.get(
                section, "sql_alchemy_conn_secret", fallback="").strip():
            return True
        value = cfg.get(section, "sql_alchemy_conn", fallback="").strip()
        if value.startswith("sqlite:"):
            # Airflow writes its default (a SQLite file in the home) into every airflow.cfg
            # it generates; it is the database only if that file exists.
            return os.path.isfile(value.split(":///", 1)[-1].split("?", 1)[0])
        if value:
            return True
    return False


def database_env(home: str, conn_id: str = "") -> dict[str, str | None]:
    """Return the environment changes that give the ``airflow`` CLI the metadata database
    (values may hold a password: they go into the child's environment only).

    ``conn_id`` names an Airflow connection holding the database (the source's
    ``?conn_id=``): it is used wherever the CLI runs. Otherwise nothing changes, except
    inside an Airflow task: Airflow 3's task supervisor replaces
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` with ``airflow-db-not-allowed:///`` there, and the
    CLI child would inherit it. The deployment's value is then taken from the environment
    the worker was started with, as the task's ancestors show it in /proc (LocalExecutor);
    failing that (a Celery worker rewrites that memory with its process title) the variables
    are left out if airflow.cfg or a ``_CMD``/``_SECRET`` variable configures the database.
    Raise SourceUnavailable if none of this finds it — never a silent fall-back to Airflow's
    default SQLite file."""
    if conn_id:
        from airflow_backup.connections import get_connection

        url = get_connection(conn_id).database_url()
        return dict.fromkeys(_DATABASE_VARS, url)
    if not any(os.environ.get(k, "").startswith(_BLOCKED_DATABASE) for k in _DATABASE_VARS):
        return {}
    found: dict[str, str | None] = dict.fromkeys(_DATABASE_VARS)
    pid = os.getpid()
    for _ in range(16):  # supervisor, worker, its parents: a few levels at most
        pid = _parent_pid(pid)
        if pid <= 1:
            break
        environ = _ancestor_environ(pid)
        values = {k: environ[k] for k in _DATABASE_VARS
                  if environ.get(k) and not environ[k].startswith(_BLOCKED_DATABASE)}
        if values:
            found.update(values)
            return found
    if _configured_elsewhere(home):
        return found
    raise SourceUnavailable(
        "inside an Airflow task the metadata database URL is hidden from tasks and could "
        "not be found: name an Airflow connection that holds it (airflow://HOME?conn_id=ID) "
        "or set [database] sql_alchemy_conn in HOME/airflow.cfg")


#: The pool every new Airflow home has, as ``airflow pools export`` shows it untouched.
_STOCK_DEFAULT_POOL = {"description": "Default pool", "include_deferred": False, "slots": 128}


def _untouched_default(kind: str, key: str, value: object) -> bool:
    """Whether ``value`` is what a fresh home holds for ``key`` (its default_pool): a restore
    replaces it like an absent key, without --on-existing overwrite."""
    return kind == "pools" and key == "default_pool" and value == _STOCK_DEFAULT_POOL


class AirflowMetadataSource:
    """An Airflow installation's metadata; see the module docstring for the URL."""

    kind: ClassVar[str] = "airflow"
    #: The URL query options this source reads; any other is an error (a typo must not
    #: silently change what is backed up, or where from).
    options: ClassVar[frozenset[str]] = frozenset(("airflow", "conn_id", "database"))

    def __init__(self, url: SourceURL) -> None:
        self.url = url
        self.res = Resources()
        self.db: DataSource | None = None
        self._tmp = ""
        self._data: dict[str, JSONObject] = {}

    # ---- the airflow CLI -----------------------------------------------------------------

    def _home(self) -> str:
        home = self.url.path if self.url.path not in ("", "/") else os.environ.get(
            "AIRFLOW_HOME", "")
        if not home or not os.path.isdir(home):
            raise SourceUnavailable(f"Airflow home {home or '(AIRFLOW_HOME unset)'}: "
                                    "no such directory")
        return home

    def _binary(self) -> str:
        named = self.url.param("airflow")
        try:
            return find_tool(named or "airflow", "AIRFLOW_BACKUP_AIRFLOW_BIN")
        except ToolMissing:
            # A worker started by path (venv/bin/airflow) need not have it on PATH: the
            # airflow CLI installed beside this interpreter is the deployment's.
            sibling = os.path.join(os.path.dirname(sys.executable), "airflow")
            if named or os.environ.get("AIRFLOW_BACKUP_AIRFLOW_BIN") or not os.access(
                    sibling, os.X_OK):
                raise
            return sibling

    def _start(self, *args: str) -> Child:
        binary = self._binary()
        env: dict[str, str | None] = {"AIRFLOW_HOME": self._home(),
                                      "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                                      **database_env(self._home(),
                                                     self.url.param("conn_id"))}
        return self.res.start([binary, *args], f"airflow {' '.join(args[:2])}", env=env,
                              stdout=self._devnull_or_pipe(args))

    @staticmethod
    def _devnull_or_pipe(args: tuple[str, ...]) -> int:
        import subprocess

        return subprocess.PIPE if args[0] in ("version", "config") else subprocess.DEVNULL

    def _run_all(self, commands: dict[str, list[str]]) -> dict[str, str]:
        """Run airflow commands in parallel; return each one's stdout. Raise SourceError."""
        children = {name: self._start(*argv) for name, argv in commands.items()}
        out = {}
        for name, child in children.items():
            data = child.stdout.read() if child.proc.stdout is not None else b""
            child.check(SourceError)
            out[name] = data.decode("utf-8", "replace").strip()
        return out

    def _export(self, directory: str, prefix: str, also: dict[str, list[str]] | None = None,
                kinds: tuple[str, ...] | list[str] = _KINDS
                ) -> tuple[dict[str, str], dict[str, JSONObject]]:
        """Export variables, connections and pools (or ``kinds``) as JSON files, running the
        commands in ``also`` alongside; return those commands' output and the exports."""
        files = {k: os.path.join(directory, f"{prefix}{k}.json") for k in kinds}
        out = self._run_all({**{k: [*_EXPORT_ARGS[k], files[k]] for k in kinds},
                             **(also or {})})
        parsed: dict[str, JSONObject] = {}
        for k, path in files.items():
            with open(path, encoding="utf-8") as f:
                parsed[k] = json.load(f)
        return out, parsed

    # ---- backup --------------------------------------------------------------------------

    def probe(self) -> SourceDescription:
        """Ask the CLI for its version and database URL, then probe that database; export
        nothing (no secrets are written to disk)."""
        info = self._run_all({"version": ["version"],
                              "conn": ["config", "get-value", "database", "sql_alchemy_conn"]})
        described: SourceDescription = {"airflow_version": info["version"].splitlines()[-1],
                                        "home": self._home()}
        if self.url.param("database", "true").lower() not in ("false", "0", "no"):
            db = open_parsed(sqlalchemy_to_source_url(info["conn"].splitlines()[-1]))
            try:
                described["database"] = {"kind": db.kind, **db.probe()}
            finally:
                db.cleanup()
        return described

    def describe(self) -> SourceDescription:
        """Ask the CLI for version, database URL and fernet key; export the logical data."""
        self._tmp = self.res.temp_dir("airflow")
        info, self._data = self._export(self._tmp, "", {
            "version": ["version"],
            "conn": ["config", "get-value", "database", "sql_alchemy_conn"],
            "fernet": ["config", "get-value", "core", "fernet_key"]})
        db_url = sqlalchemy_to_source_url(info["conn"].splitlines()[-1])
        revision = _alembic_revision(db_url)
        meta: SourceDescription = {
            "airflow_version": info["version"].splitlines()[-1],
            "alembic_revision": revision,
            "fernet_key_fingerprint": hashlib.sha256(
                info["fernet"].encode()).hexdigest()[:16] if info["fernet"] else "",
            "home": self._home(),
            "tables": {k: {"rows": len(v), "checksum": _digest(v)}
                       for k, v in self._data.items()},
        }
        if self.url.param("database", "true").lower() not in ("false", "0", "no"):
            self.db = open_parsed(db_url)
            meta["database"] = {"kind": self.db.kind, "url": db_url.redacted(),
                                **self.db.describe()}
        return meta

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Store the three JSON exports (then delete them) and the database dump."""
        files = {}
        for k in _KINDS:
            with open(os.path.join(self._tmp, f"{k}.json"), "rb") as f:
                files[f"airflow/{k}.json"] = sink.add_stream(f"airflow/{k}.json", f)
        self.res.remove(self._tmp)
        facts: ExportFacts = {"files": files}
        if self.db is not None:
            facts["database"] = self.db.export(sink, None)
        return facts

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Parse the stored JSON exports back; validate the database dump."""
        for k in _KINDS:
            try:
                back = json.loads(reader.read_bytes(f"airflow/{k}.json"))
            except ValueError as exc:
                raise ValidationFailed(f"stored {k} export is not JSON: {exc}") from None
            if back != self._data[k]:
                raise ValidationFailed(f"stored {k} export differs from what Airflow exported")
        facts: ValidationFacts = {"json": list(_KINDS)}
        if self.db is not None:
            facts["database"] = self.db.validate(reader)
        return facts

    # ---- restore -------------------------------------------------------------------------

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Import into an Airflow home, or restore the database dump into a database URL."""
        if self.url.scheme != "airflow":
            return self._restore_database(stored, options)
        recorded = stored.source
        tmp = self.res.temp_dir("airflow-restore")
        info, current = self._export(tmp, "current-", {
            "conn": ["config", "get-value", "database", "sql_alchemy_conn"]})
        revision = _alembic_revision(sqlalchemy_to_source_url(info["conn"].splitlines()[-1]))
        if revision != recorded.get("alembic_revision") and not options.force:
            raise RestoreError(f"target schema revision {revision} differs from the backup's "
                               f"{recorded.get('alembic_revision')}: migrate the target to the "
                               "same Airflow version, or pass --force")
        wanted: dict[str, JSONObject] = {
            k: json.loads(stored.reader.read_bytes(f"airflow/{k}.json")) for k in _KINDS}
        conflicts = {k: sorted(key for key, v in wanted[k].items()
                               if key in current[k] and current[k][key] != v
                               and not _untouched_default(k, key, current[k][key]))
                     for k in _KINDS}
        n_conflicts = sum(len(v) for v in conflicts.values())
        if n_conflicts and options.on_existing == "fail":
            first = next(f"{k[:-1]} {v[0]!r}" for k, v in conflicts.items() if v)
            raise RestoreTargetExists(f"{n_conflicts} key(s) exist in the target with other "
                                      f"values (first: {first}): pass --on-existing skip or "
                                      "overwrite")
        skipped = conflicts if options.on_existing == "skip" else {k: [] for k in _KINDS}
        expect = {k: {key: v for key, v in wanted[k].items()
                      if key not in skipped[k]} for k in _KINDS}
        imported = []
        for k in _KINDS:
            todo = {key: v for key, v in expect[k].items() if current[k].get(key) != v}
            if not todo:
                continue
            imported.append(k)
            path = os.path.join(tmp, f"import-{k}.json")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                      encoding="utf-8") as f:
                json.dump(todo, f)
            extra = {"variables": ["-a", "overwrite"], "connections": ["--overwrite"],
                     "pools": []}[k]
            self._run_all({k: [k, "import", *extra, path]})
        # Read back what was imported; kinds already identical were read just before.
        after = dict(current)
        if imported:
            _, reread = self._export(tmp, "after-", kinds=imported)
            after.update(reread)
        checks = []
        for k in _KINDS:
            got = {key: after[k][key] for key in expect[k] if key in after[k]}
            checks.append(TableCheck(k, len(expect[k]), _digest(expect[k]), len(got),
                                     _digest(got)))
        return RestoreReport(self.url.redacted(), checks, {
            "alembic_revision": revision, "skipped": {k: [*v] for k, v in skipped.items() if v},
            "imported": {k: len(expect[k]) for k in _KINDS}})

    def _restore_database(self, stored: StoredExport, options: SourceRestoreOptions
                          ) -> RestoreReport:
        recorded = stored.source.get("database")
        if not isinstance(recorded, dict):
            raise ConfigError("this Airflow backup holds no metadata database dump")
        target = open_parsed(self.url)
        if target.kind != recorded.get("kind"):
            raise ConfigError(f"the metadata database is {recorded.get('kind')}; restore it "
                              f"into a {recorded.get('kind')} target, not {self.url.scheme}://")
        inner = StoredExport(stored.snapshot_id, stored.time,
                             {"source": recorded,
                              "export": json_object(stored.export.get("database"))},
                             stored.reader)
        try:
            return target.restore(inner, [], options)
        finally:
            target.cleanup()

    def cleanup(self) -> None:
        """Kill CLI children, remove the exports with secrets, clean up the database source."""
        self.res.close()
        if self.db is not None:
            self.db.cleanup()


def _alembic_revision(url: SourceURL) -> str:
    """Return the metadata database's alembic revision (empty if the table is missing)."""
    try:
        if url.scheme == "sqlite":
            if not os.path.isfile(url.path):
                raise SourceUnavailable(f"metadata database {url.path}: no such file")
            conn = sqlite3.connect(f"file:{url.path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            finally:
                conn.close()
            return str(row[0]) if row else ""
        from airflow_backup.sources.mysql import MySQLSource
        from airflow_backup.sources.postgres import PostgresSource

        source = open_parsed(url)
        try:
            if isinstance(source, PostgresSource):
                row = source.connect(url.database or "postgres").execute(
                    "SELECT version_num FROM alembic_version").fetchone()
            elif isinstance(source, MySQLSource):
                cur = source.connect(url.database or None).cursor()
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
            else:
                raise ConfigError(f"unsupported metadata database {url.redacted()}")
            return str(row[0]) if row else ""
        finally:
            source.cleanup()
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"metadata database {url.redacted()}: {exc}") from None
