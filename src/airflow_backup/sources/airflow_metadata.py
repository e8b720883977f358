"""Airflow metadata: the metadata database and a logical export of variables, connections and
pools, through the local ``airflow`` CLI (Airflow 3 tasks cannot use the ORM, and its REST API
redacts secrets). The engine never imports Airflow: it runs the CLI as a child process.

URL: ``airflow:///path/to/AIRFLOW_HOME`` (empty path: the ``AIRFLOW_HOME`` of the environment).
Query: ``airflow=/path/to/airflow`` (the CLI; or env ``AIRFLOW_BACKUP_AIRFLOW_BIN``),
``database=false`` (logical export only). The database named by ``sql_alchemy_conn`` is dumped
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
from typing import ClassVar
from urllib.parse import unquote

from airflow_backup.errors import (
    ConfigError,
    RestoreError,
    RestoreTargetExists,
    SourceError,
    SourceUnavailable,
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


class AirflowMetadataSource:
    """An Airflow installation's metadata; see the module docstring for the URL."""

    kind: ClassVar[str] = "airflow"

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

    def _start(self, *args: str) -> Child:
        binary = find_tool(self.url.param("airflow") or "airflow", "AIRFLOW_BACKUP_AIRFLOW_BIN")
        env = {"AIRFLOW_HOME": self._home(), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
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
                               if key in current[k] and current[k][key] != v) for k in _KINDS}
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
