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

A ``postgresql+pitr://`` source (base backups plus the WAL archive) is drilled by point-in-time
recovery (:func:`_drill_pitr`): the WAL archive is checked (a gap fails the drill), a random
target time is drawn from the recent recoverable window
(:mod:`airflow_backup.pitr.drill_target`; ``pitr_within``), the base backup that ended before
it is restored into the sandbox with a ``restore_command`` fetching WAL from the repository,
a scratch server (:mod:`airflow_backup.pitr.scratch_server`) replays to the target and
promotes, then ``bt_index_check`` (amcheck) runs on every btree index of the drill's
databases and the SQL assertions run in the first. Its RTO runs from the start of the drill to
the checks passed; stopping the scratch server is not counted. With ``as_of`` the target is
that time (it must lie in the recoverable window).

The result is recorded as a small snapshot tagged ``airflow-backup-drill`` (and ``job=<name>``)
whose ``airflow_backup.drill`` object holds it (an empty tree; restic lists and checks it like
any snapshot and ignores the extra field), so every host sees the drill history. A failed
drill is an outcome (status ``failed``), not an exception: it is a finding.
"""

from __future__ import annotations

import contextlib
import os
import shlex
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
    #: PITR drills: draw the target time from the last ``pitr_within`` seconds of the
    #: recoverable window (None: from the newest restorable base backup's stop time on).
    pitr_within: float | None = None
    #: PITR drills: the databases amcheck verifies (SQL assertions run in the first);
    #: empty: ``postgres``.
    pitr_databases: tuple[str, ...] = ()


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
    #: PITR drills: the recovery target time drawn, and the range it was drawn from.
    target_time: str = ""
    target_range: dict[str, str] = field(default_factory=dict)

    @property
    def rto_exceeded(self) -> bool:
        """Return whether the restore took longer than allowed."""
        return self.rto > self.max_rto


def _source_key(sn: Snapshot) -> str:
    from airflow_backup.pitr.catalog import pitr_metadata

    pitr = pitr_metadata(sn)
    if pitr is not None and pitr.get("kind") == "basebackup":
        return _PITR_KEY + str(pitr.get("source", ""))
    meta = sn.extra.get("airflow_backup")
    source = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(source, dict):
        return str(source.get("url", ""))
    return "files"


#: The group key prefix of base backups (one group per server).
_PITR_KEY = "pitr:"


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
        libpq = {"PGHOST": parsed.host or "localhost", "PGDATABASE": parsed.database}
        if parsed.port:
            libpq["PGPORT"] = str(parsed.port)
        if parsed.username:
            libpq["PGUSER"] = parsed.username
        pw = source_password(parsed, "PGPASSWORD")
        if pw is not None:
            libpq["PGPASSWORD"] = pw
        return _psql(libpq, query)
    if kind == "mysql":
        argv = ["mysql", "-N", "-B", "-h", parsed.host or "localhost",
                *(["-P", str(parsed.port)] if parsed.port else []),
                *(["-u", parsed.username] if parsed.username else []),
                parsed.database, "-e", query]
        pw = source_password(parsed, "MYSQL_PWD")
        if pw is not None:
            env["MYSQL_PWD"] = pw
    else:
        raise ConfigError(f"SQL assertions are not supported for {kind} sources")
    return _run_scalar(argv, env)


def _psql(libpq: dict[str, str], query: str, psql: str = "psql",
          what: str = "SQL assertion") -> str:
    """Return the first value ``query`` returns, as psql prints it, connecting with the
    libpq variables ``libpq``. Raise SourceError (naming ``what``) if it fails."""
    return _run_scalar([psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query],
                       {**os.environ, **libpq}, what)


def _run_scalar(argv: list[str], env: dict[str, str], what: str = "SQL assertion") -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=3600)
    if proc.returncode != 0:
        error = " ".join(proc.stderr.strip().split())
        raise SourceError(f"{what} failed to run: {error[:300]}")
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


#: Every btree index amcheck can check: valid, ready, not another session's temp table's.
_BTREE_INDEXES = ("SELECT c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                  "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' "
                  "AND c.relpersistence <> 't' AND i.indisvalid AND i.indisready")


def _pitr_cache(spec: RepositorySpec, box: str) -> tuple[str | None, str]:
    """Return the drill's PITR catalogue cache root (the spec's; None when caching is
    off) and the sandbox's cache directory for the restore_command, seeded with a copy of
    the catalogue file so that the server's first WAL fetch need not read every snapshot."""
    from airflow_backup.storage.cache import resolve_cache_root

    root = None if spec.cache.enabled is False else str(resolve_cache_root(
        spec.cache.root or None))
    sandbox_cache = os.path.join(box, "cache")
    os.makedirs(os.path.join(sandbox_cache, "pitr"), mode=0o700)
    return root, sandbox_cache


def _seed_cache(repo: Repository, root: str | None, sandbox_cache: str) -> None:
    if root is None:
        return
    name = f"{repo.config.id}.json"
    with contextlib.suppress(OSError):
        shutil.copyfile(os.path.join(root, "pitr", name),
                        os.path.join(sandbox_cache, "pitr", name))


def _wal_command(spec: RepositorySpec, prefix: list[str], password_file: str,
                 cache_dir: str) -> str:
    """Return the scratch server's restore_command: ``pg restore-wal`` of this
    installation against ``spec``'s repository, the password from ``password_file``."""
    argv = [*prefix, "-r", spec.url, "--password-file", password_file, "--cache-dir",
            cache_dir, "pg", "restore-wal"]
    return " ".join(shlex.quote(a) for a in argv) + " %f %p"


def _drill_pitr(repo: Repository, spec: RepositorySpec, drill: DrillOptions, sandbox: str,
                checks: list[str], as_of: str = "") -> tuple[str, dict[str, str], str, float]:
    """Drill the job's PITR archive in ``repo`` (module docstring; ``as_of``: recover to
    that time instead of a random one); return the recovery target time, the range it was
    drawn from, the restored base backup's id and the seconds spent stopping the scratch
    server (not part of the RTO). Raise WalGap for an archive with a gap, SnapshotNotFound
    when nothing (or not ``as_of``) is recoverable, RestoreError when recovery fails,
    SourceError when a check fails."""
    from pathlib import Path

    from airflow_backup.pitr import scratch_server as scratch
    from airflow_backup.pitr.catalog import PitrCatalog
    from airflow_backup.pitr.drill_target import drill_range
    from airflow_backup.pitr.gaps import check_archive
    from airflow_backup.pitr.recovery import RecoveryTarget, restore_base_backup
    from airflow_backup.sources.base import SourceURL

    box = os.path.join(sandbox, "pitr")
    os.mkdir(box, 0o700)
    root, sandbox_cache = _pitr_cache(spec, box)
    catalog = PitrCatalog(repo, Path(root) if root else None)
    report = check_archive(repo, catalog)
    at = parse_as_of(as_of) / 1e9 if as_of else None
    window = drill_range(report, drill.pitr_within, at=at)
    drawn = window.to_json()
    checks.append(f"WAL archive: no gaps; target time {drawn['target']} "
                  + ("given" if as_of else "drawn") + f" in {drawn['from']} .. {drawn['to']}")
    _seed_cache(repo, root, sandbox_cache)
    user = scratch.server_os_user()
    prefix, env = scratch.cli_for_server(user)
    password_file = os.path.join(box, "repository-password")
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(spec.password.read() + "\n")
    target = RecoveryTarget("time", drawn["target"], action="promote")
    data = Path(box) / "data"
    restored = restore_base_backup(repo, catalog, target, data,
                                   _wal_command(spec, prefix, password_file, sandbox_cache))
    checks.append(f"base backup {restored.backup.snapshot_id[:8]} (ended "
                  f"{restored.backup.meta.get('stop_time')}) restored: {restored.size} bytes")
    server = scratch.ScratchServer(Path(box), data, user=user, env=env)
    server.prepare()
    scratch.give_to(Path(sandbox), user)  # the server's user must enter the sandbox
    started = time.monotonic()
    try:
        databases = list(drill.pitr_databases) or ["postgres"]
        login = SourceURL.parse(str(restored.backup.meta.get("source", "")) or
                                "postgresql://postgres@localhost").username or "postgres"
        server.start(drill.max_rto)
        try:
            server.wait_promoted(databases[0], login, drill.max_rto)
        except BackupError:
            if scratch.RECOVERY_ENDED_EARLY not in server.log_text():
                raise
            # No transaction committed after the target in the archived WAL: the data at
            # the target is the data at the end of the archive. Recover to that end.
            checks.append("no transaction committed after the target time in the archived "
                          "WAL: recovered to its end (the same data)")
            server.start(drill.max_rto, recovery_target_time="")
            server.wait_promoted(databases[0], login, drill.max_rto)
        libpq = {"PGHOST": str(server.socket_dir), "PGPORT": str(server.port),
                 "PGUSER": login, "PGDATABASE": databases[0]}
        psql = str(server.bindir / "psql") if (server.bindir / "psql").exists() else "psql"
        libpq["PGUSER"] = _psql(libpq, "SELECT rolname FROM pg_roles WHERE oid = 10", psql,
                                "finding the superuser") or login
        checks.append(f"scratch server promoted after {time.monotonic() - started:.1f}s "
                      "of WAL replay")
        for db in databases:
            dbenv = {**libpq, "PGDATABASE": db}
            _psql(dbenv, "CREATE EXTENSION IF NOT EXISTS amcheck", psql, f"amcheck in {db}")
            count = _psql(dbenv, f"SELECT count(bt_index_check(x.oid::regclass)::text) "
                                 f"FROM ({_BTREE_INDEXES}) x", psql, f"amcheck in {db}")
            checks.append(f"amcheck: bt_index_check passed on {count} btree index(es) of "
                          f"database {db}")
        for a in drill.sql:
            got = _psql({**libpq, "PGDATABASE": databases[0]}, a.query, psql)
            if got != str(a.expect):
                raise SourceError(f"SQL assertion {a.query!r}: got {got!r}, expected "
                                  f"{str(a.expect)!r}")
            checks.append(f"SQL {a.query!r} = {got!r}")
    finally:
        t0 = time.monotonic()
        server.stop()
        stopping = time.monotonic() - t0
    return drawn["target"], drawn, restored.backup.snapshot_id, stopping


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
    drilled: list[str] = []
    files = size = 0
    teardown = 0.0
    target_time = ""
    target_range: dict[str, str] = {}
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
                key = _source_key(sn)
                if key == "files":
                    f, b = _drill_files(repo, sn, options, sandbox, checks)
                    files, size = files + f, size + b
                elif key.startswith(_PITR_KEY):
                    target_time, target_range, restored, stopping = _drill_pitr(
                        repo, held, options, sandbox, checks, as_of)
                    teardown += stopping
                    drilled.append(restored)
                    continue
                else:
                    _drill_source(repo, sn, job, options, sandbox, checks)
                drilled.append(sn.id)
    except (BackupError, OSError, ValueError) as exc:
        error = Failure.of(exc, "drill")
    finally:
        rto = time.monotonic() - started - teardown
        shutil.rmtree(sandbox, ignore_errors=True)
    if error is None and rto > options.max_rto:
        error = Failure("RTOExceeded", f"RTO {rto:.1f}s exceeds max_rto {options.max_rto:.0f}s")
    outcome = replace(outcome, status=Status.FAILED if error else Status.SUCCESS, error=error,
                      rto=rto, duration=rto,
                      snapshots=tuple(drilled or (s.id for s in snapshots)),
                      target_time=target_time, target_range=target_range,
                      snapshot_time=max((s.time for s in snapshots), default=""),
                      checks=tuple(checks), repository=held.label if held else "",
                      files=files, bytes=size)
    if record and repo is not None and held is not None:
        with contextlib.suppress(BackupError, OSError):
            outcome = replace(outcome, record=record_drill(repo, outcome, held.lock_wait))
    return outcome
