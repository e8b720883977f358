"""Restore drills: restore a job's newest (or ``as_of``) backup into a sandbox, validate it,
measure the RTO, record the result in the repository, clean up.

One implementation for ``airflow-backup drill``, the generated ``drill__<job>`` DAG and
RestoreDrillOperator. The drill follows the backup: it looks in the repository and its
fallbacks and drills the one holding the job's newest snapshot (a degraded backup is drilled
where it landed). The sandbox is a temporary directory for files and, for database sources, a
scratch database ``abk_drill_<job>_<pid>`` on the drill's ``target`` server (a SQLite source is
restored into a file in the temporary directory). Validations: every blob is verified while
restoring (MAC and SHA-256), row counts and checksums recorded at backup time are compared by
the source's restore, custom SQL assertions run against the scratch database, configured file
hashes and SQLite ``quick_check`` run on restored files. The RTO is the wall time from the
start of the restore to the end of the validations.

The result is recorded as a small snapshot tagged ``airflow-backup-drill`` (and ``job=<name>``)
whose ``airflow_backup.drill`` object holds it (an empty tree; restic lists and checks it like
any snapshot and ignores the extra field), so every host sees the drill history. A failed
drill is an outcome (status ``failed``), not an exception: it is a finding.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from airflow_backup import __version__
from airflow_backup.errors import (
    BackupError,
    ConfigError,
    SnapshotNotFound,
    SourceError,
)
from airflow_backup.jsontypes import JSONObject
from airflow_backup.operations.filechecks import is_sqlite, sha256_file, sqlite_problem
from airflow_backup.operations.outcome import Failure, Outcome, Status
from airflow_backup.operations.spec import RepositorySpec, open_repository
from airflow_backup.operations.tags import DRILL_TAG, drill_tag, is_backup_of
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import SnapshotFilter, parse_as_of, pick_as_of
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_time
from airflow_backup.restorer.restore import RestoreOptions, Restorer

__all__ = ["DrillOptions", "DrillOutcome", "FileCheck", "SqlCheck", "drill", "pick_snapshots",
           "record_drill"]


@dataclass(frozen=True, slots=True)
class SqlCheck:
    """A query run against the restored scratch database; its first value must equal
    ``expect`` (compared as text)."""

    query: str
    expect: str


@dataclass(frozen=True, slots=True)
class FileCheck:
    """A file (absolute path as backed up) whose restored content must have this SHA-256."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """How to drill: ``target`` a database server URL for scratch databases; ``max_rto`` the
    longest acceptable restore in seconds; the validations to run."""

    target: str = ""
    max_rto: float = 3600.0
    compare_recorded: bool = True
    sql: tuple[SqlCheck, ...] = ()
    files: tuple[FileCheck, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillOutcome(Outcome):
    """A drill's outcome. ``rto`` in seconds; ``checks`` one line per passed validation;
    ``record`` the id of the drill-record snapshot; ``repository`` where the drilled
    snapshots were; ``files``/``bytes`` what the file restores wrote; ``links`` where the
    drill ran (Airflow: its run, its log, the backup run that started it), recorded with it."""

    job: str
    rto: float = 0.0
    max_rto: float = 3600.0
    snapshots: tuple[str, ...] = ()
    snapshot_time: str = ""
    checks: tuple[str, ...] = ()
    record: str = ""
    repository: str = ""
    files: int = 0
    bytes: int = 0
    links: dict[str, str] = field(default_factory=dict)

    @property
    def rto_exceeded(self) -> bool:
        """Return whether the restore took longer than allowed."""
        return self.rto > self.max_rto


def _source_key(sn: Snapshot) -> str:
    meta = sn.extra.get("airflow_backup")
    source = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(source, dict):
        return str(source.get("url", ""))
    return "files"


def _candidates(repo: Repository, job: str, flt: SnapshotFilter) -> list[Snapshot]:
    return [s for s in repo.list_snapshots()
            if DRILL_TAG not in s.tags and flt.matches(s) and (not job or is_backup_of(s, job))]


def pick_snapshots(repo: Repository, job: str, as_of: str = "",
                   flt: SnapshotFilter | None = None) -> list[Snapshot]:
    """Return, per source of ``job`` (any backup matching ``flt`` when ``job`` is ''), its
    newest snapshot at or before ``as_of``. Raise SnapshotNotFound if there is none."""
    groups: dict[str, list[Snapshot]] = {}
    for sn in _candidates(repo, job, flt or SnapshotFilter()):
        groups.setdefault(_source_key(sn), []).append(sn)
    if not groups:
        raise SnapshotNotFound(f"job {job} has no snapshot to drill" if job
                               else "no snapshot matches the drill's filter")
    as_of_ns = parse_as_of(as_of) if as_of else time.time_ns()
    return [pick_as_of(g, as_of_ns) for _, g in sorted(groups.items())]


def _drill_files(repo: Repository, sn: Snapshot, drill: DrillOptions, sandbox: str,
                 checks: list[str]) -> tuple[int, int]:
    target = os.path.join(sandbox, "files")
    stats = Restorer(repo).restore(sn, RestoreOptions(target=target))
    if stats.errors:
        raise SourceError(f"restore of {sn.short_id} left {len(stats.errors)} item(s) out: "
                          f"{stats.errors[0][0]}: {stats.errors[0][1]}")
    checks.append(f"{sn.short_id}: restored {stats.files} files, {stats.bytes} bytes, "
                  "every blob verified")
    for fh in drill.files:
        restored = os.path.join(target, fh.path.lstrip("/"))
        if not os.path.isfile(restored):
            raise SourceError(f"file hash check: {fh.path} is not in the restored snapshot")
        digest = sha256_file(restored)
        if digest != fh.sha256:
            raise SourceError(f"file hash check: {fh.path}: sha256 {digest[:16]}…, "
                              f"expected {fh.sha256[:16]}…")
        checks.append(f"{fh.path}: sha256 matches")
    for d, _, files in os.walk(target):
        for f in files:
            p = os.path.join(d, f)
            if is_sqlite(p):
                problem = sqlite_problem(p)
                rel = "/" + os.path.relpath(p, target)
                if problem:
                    raise SourceError(f"restored SQLite database {rel}: {problem}")
                checks.append(f"{rel}: SQLite quick_check ok")
    return stats.files, stats.bytes


def _scalar(kind: str, url: str, query: str) -> str:
    from airflow_backup.sources.base import SourceURL, source_password

    parsed = SourceURL.parse(url, allow_password=True)
    if kind == "sqlite":
        import sqlite3

        con = sqlite3.connect(f"file:{parsed.path}?mode=ro", uri=True)
        try:
            row = con.execute(query).fetchone()
        finally:
            con.close()
        return "" if row is None else str(row[0])
    env = dict(os.environ)
    if kind == "postgresql":
        env.update({"PGHOST": parsed.host or "localhost", "PGDATABASE": parsed.database})
        if parsed.port:
            env["PGPORT"] = str(parsed.port)
        if parsed.username:
            env["PGUSER"] = parsed.username
        pw = source_password(parsed, "PGPASSWORD")
        if pw is not None:
            env["PGPASSWORD"] = pw
        argv = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query]
    elif kind == "mysql":
        argv = ["mysql", "-N", "-B", "-h", parsed.host or "localhost",
                *(["-P", str(parsed.port)] if parsed.port else []),
                *(["-u", parsed.username] if parsed.username else []),
                parsed.database, "-e", query]
        pw = source_password(parsed, "MYSQL_PWD")
        if pw is not None:
            env["MYSQL_PWD"] = pw
    else:
        raise ConfigError(f"SQL assertions are not supported for {kind} sources")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=600)
    if proc.returncode != 0:
        raise SourceError(f"SQL assertion failed to run: {proc.stderr.strip()[:200]}")
    out = proc.stdout.strip().splitlines()
    return out[0].strip() if out else ""


def _drop_scratch(kind: str, url: str) -> None:
    from airflow_backup.sources.base import SourceURL

    parsed = SourceURL.parse(url, allow_password=True)
    if kind == "postgresql":
        admin = parsed.with_database("postgres").redacted()
        with contextlib.suppress(BackupError, OSError, subprocess.SubprocessError):
            _scalar("postgresql", admin,
                    f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    elif kind == "mysql":
        with contextlib.suppress(BackupError, OSError, subprocess.SubprocessError):
            _scalar("mysql", parsed.with_database("").redacted(),
                    f"DROP DATABASE IF EXISTS `{parsed.database}`")


def _assert_sql(kind: str, url: str, assertions: tuple[SqlCheck, ...],
                checks: list[str]) -> None:
    for a in assertions:
        got = _scalar(kind, url, a.query)
        if got != str(a.expect):
            raise SourceError(f"SQL assertion {a.query!r}: got {got!r}, expected "
                              f"{str(a.expect)!r}")
        checks.append(f"SQL {a.query!r} = {got!r}")


def _server_scratch(kind: str, drill: DrillOptions, scratch: str, name: str) -> str:
    """Return the URL of scratch database ``scratch`` on the drill's ``target`` server,
    which must be a ``kind`` server."""
    from airflow_backup.sources.base import SourceURL
    from airflow_backup.sources.registry import kind_of_scheme

    if not drill.target:
        raise ConfigError(f"job {name}: drill.target must name a {kind} server for the "
                          "scratch database")
    server = SourceURL.parse(drill.target)
    if kind_of_scheme(server.scheme) != kind:
        raise ConfigError(f"job {name}: the drill of a {kind} backup needs a {kind} "
                          f"drill.target, not {server.scheme}://")
    return server.with_database(scratch).redacted()


def _scratch_target(meta: JSONObject, drill: DrillOptions, sandbox: str, scratch: str,
                    name: str) -> tuple[str, str, str]:
    """Return where a drill restores a source snapshot with metadata ``meta``: the target
    URL, the kind of database holding it (for SQL assertions and clean-up; '' for an
    object store) and that database's URL. Object-store prefixes go to an in-memory bucket,
    SQLite files to the sandbox, server databases to a scratch database on drill.target;
    an Airflow backup's metadata database is restored like a database of its kind."""
    from airflow_backup.sources.base import SourceURL

    source = meta.get("source")
    assert isinstance(source, dict)
    kind = str(source.get("kind", ""))
    if kind == "object_store":
        return f"memory://abk-drill/{scratch}", "", ""
    if kind == "airflow":
        inner = source.get("database")
        if not isinstance(inner, dict):
            raise ConfigError("this Airflow backup holds no metadata database dump to drill")
        kind = str(inner.get("kind", ""))
    if kind == "table":
        engine = SourceURL.parse(str(source.get("url", ""))).scheme.split("+", 1)[1]
        db_kind = "postgresql" if engine == "postgres" else engine
        db = (f"sqlite://{os.path.join(sandbox, scratch + '.db')}" if db_kind == "sqlite"
              else _server_scratch(db_kind, drill, scratch, name))
        if db_kind != "sqlite":
            _create_scratch(db_kind, db)
        return "table+" + db, db_kind, db
    db = (f"sqlite://{os.path.join(sandbox, scratch + '.db')}" if kind == "sqlite"
          else _server_scratch(kind, drill, scratch, name))
    return db, kind, db


def _create_scratch(kind: str, url: str) -> None:
    from airflow_backup.sources.base import SourceURL

    parsed = SourceURL.parse(url, allow_password=True)
    if kind == "postgresql":
        _scalar(kind, parsed.with_database("postgres").redacted(),
                f'CREATE DATABASE "{parsed.database}"')
    else:
        _scalar(kind, parsed.with_database("").redacted(),
                f"CREATE DATABASE `{parsed.database}`")


def _drop_memory(url: str) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    path = url.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _drill_source(repo: Repository, sn: Snapshot, job: str, drill: DrillOptions,
                  sandbox: str, checks: list[str]) -> None:
    from airflow_backup.sources.actions import restore_source, source_metadata
    from airflow_backup.sources.metadata import as_json

    meta = as_json(source_metadata(sn) or {})
    name = job or "adhoc"
    scratch = f"abk_drill_{name.replace('-', '_').replace('.', '_')}_{os.getpid()}"[:60]
    target, db_kind, db = _scratch_target(meta, drill, sandbox, scratch, name)
    try:
        report = restore_source(repo, sn, target)
        if drill.compare_recorded:
            checks.append(f"{sn.short_id}: {len(report.checks)} table(s) match the row counts "
                          "and checksums recorded at backup time")
        _assert_sql(db_kind or "object_store", db, drill.sql, checks)
    finally:
        if db_kind:
            _drop_scratch(db_kind, db)
        else:
            _drop_memory(target)


def record_drill(repo: Repository, outcome: DrillOutcome, lock_wait: float = 0.0) -> str:
    """Store ``outcome`` as a drill-record snapshot (waiting up to ``lock_wait`` seconds for
    an exclusive lock held by another process); return its id."""
    body = outcome.to_json()
    for key in ("record", "warnings", "duration"):
        body.pop(key, None)
    error = outcome.error
    body["ok"] = outcome.ok
    body["error"] = error.describe() if error else ""
    body["rto_exceeded"] = outcome.rto_exceeded
    tags = [DRILL_TAG] + ([drill_tag(outcome.job)] if outcome.job else [])
    with repo.lock(exclusive=False, retry_seconds=lock_wait):
        tree, _ = repo.save_tree([])
        repo.flush()
        sn = Snapshot(time=format_time(datetime.now(UTC).astimezone()), tree=tree,
                      paths=[f"/airflow-backup-drill/{outcome.job or 'adhoc'}"],
                      hostname=socket.gethostname(), tags=tags,
                      program_version=f"airflow-backup {__version__}",
                      extra={"airflow_backup": {"drill": body}})
        return repo.save_snapshot(sn)


def _newest_holder(spec: RepositorySpec, job: str, flt: SnapshotFilter
                   ) -> tuple[RepositorySpec, Repository]:
    """Return the repository of ``spec.chain()`` holding the newest backup of ``job``: where
    the last backup actually landed. Raise the primary's error if none can be opened,
    SnapshotNotFound if none holds a backup."""
    best: tuple[int, RepositorySpec, Repository] | None = None
    first_error: BackupError | None = None
    for target in spec.chain():
        try:
            repo = open_repository(target)
            snaps = _candidates(repo, job, flt)
        except BackupError as exc:
            first_error = first_error or exc
            continue
        newest = max((s.time_ns for s in snaps), default=None)
        if newest is not None and (best is None or newest > best[0]):
            best = (newest, target, repo)
        elif best is None and newest is None and target is spec:
            best = (-1, target, repo)
    if best is None:
        assert first_error is not None
        raise first_error
    return best[1], best[2]


def drill(spec: RepositorySpec, job: str, options: DrillOptions, *, as_of: str = "",
          flt: SnapshotFilter | None = None, record: bool = True,
          work_dir: str | None = None, links: dict[str, str] | None = None) -> DrillOutcome:
    """Drill the newest backups of ``job`` (or of any backup matching ``flt``) where they
    landed; record the outcome there (unless ``record`` is False); return it. Never raises
    for a failed drill: the outcome says ``failed``."""
    flt = flt or SnapshotFilter()
    outcome = DrillOutcome(job=job, max_rto=options.max_rto, status=Status.FAILED,
                           links=dict(links or {}))
    checks: list[str] = []
    snapshots: list[Snapshot] = []
    files = size = 0
    sandbox = tempfile.mkdtemp(prefix=f"abk-drill-{job or 'adhoc'}-", dir=work_dir)
    started = time.monotonic()
    repo: Repository | None = None
    held: RepositorySpec | None = None
    error: Failure | None = None
    try:
        held, repo = _newest_holder(spec, job, flt)
        with repo.lock(exclusive=False, retry_seconds=held.lock_wait):
            # Listed again under the lock: a forget between the first look and the lock
            # would otherwise make the drill restore a snapshot that is gone.
            snapshots = pick_snapshots(repo, job, as_of, flt)
            for sn in snapshots:
                if _source_key(sn) == "files":
                    f, b = _drill_files(repo, sn, options, sandbox, checks)
                    files, size = files + f, size + b
                else:
                    _drill_source(repo, sn, job, options, sandbox, checks)
    except (BackupError, OSError, ValueError) as exc:
        error = Failure.of(exc, "drill")
    finally:
        rto = time.monotonic() - started
        shutil.rmtree(sandbox, ignore_errors=True)
    if error is None and rto > options.max_rto:
        error = Failure("RTOExceeded", f"RTO {rto:.1f}s exceeds max_rto {options.max_rto:.0f}s")
    outcome = replace(outcome, status=Status.FAILED if error else Status.SUCCESS, error=error,
                      rto=rto, duration=rto, snapshots=tuple(s.id for s in snapshots),
                      snapshot_time=max((s.time for s in snapshots), default=""),
                      checks=tuple(checks), repository=held.label if held else "",
                      files=files, bytes=size)
    if record and repo is not None and held is not None:
        with contextlib.suppress(BackupError, OSError):
            outcome = replace(outcome, record=record_drill(repo, outcome, held.lock_wait))
    return outcome
