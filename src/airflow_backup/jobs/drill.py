"""Restore drills: restore a job's newest (or ``as_of``) backup into a sandbox, validate it,
measure the RTO, record the result in the repository, clean up, alert.

The sandbox is a temporary directory for files and, for database sources, a scratch
database ``abk_drill_<job>_<pid>`` on the drill's ``target`` server (a SQLite source is
restored into a file in the temporary directory). Validations: every blob is verified while
restoring (MAC and SHA-256), row counts and checksums recorded at backup time are compared
by the source's restore, custom SQL assertions run against the scratch database, configured
file hashes and SQLite ``quick_check`` run on restored files. The RTO is the wall time from
the start of the restore to the end of the validations.

The result is recorded as a small snapshot tagged ``airflow-backup-drill`` and ``job=<name>``
whose ``airflow_backup.drill`` object holds it (an empty tree; restic lists and checks it like
any snapshot and ignores the extra field), so every host sees the drill history.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_backup import __version__
from airflow_backup.errors import (
    BackupError,
    ConfigError,
    SnapshotNotFound,
    SourceError,
    describe,
)
from airflow_backup.jobs.config import Config, DrillConfig, SqlAssertion
from airflow_backup.jobs.notify import Notice, send
from airflow_backup.jobs.steps.common import DRILL_TAG, JobSession, is_job_snapshot, job_tag
from airflow_backup.jobs.steps.export import _is_sqlite, _sqlite_ok
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import parse_as_of, pick_as_of
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.timefmt import format_time
from airflow_backup.restorer.restore import RestoreOptions, Restorer

__all__ = ["DrillResult", "drill_job", "record_drill"]


@dataclass(slots=True)
class DrillResult:
    """A drill's outcome. ``rto`` in seconds; ``checks`` one line per passed validation."""

    job: str
    ok: bool
    rto: float
    max_rto: float
    snapshots: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    error: str = ""
    record: str = ""
    notified: int = 0

    @property
    def rto_exceeded(self) -> bool:
        """Return whether the restore took longer than allowed."""
        return self.rto > self.max_rto

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-able dict."""
        return {**asdict(self), "rto_exceeded": self.rto_exceeded}


def _source_key(sn: Snapshot) -> str:
    meta = sn.extra.get("airflow_backup")
    if isinstance(meta, dict) and isinstance(meta.get("source"), dict):
        return str(meta["source"].get("url", ""))
    return "files"


def pick_snapshots(repo: Repository, job: str, as_of: str = "") -> list[Snapshot]:
    """Return, per source of ``job``, its newest snapshot (at or before ``as_of``)."""
    snaps = [s for s in repo.list_snapshots() if is_job_snapshot(s, job)]
    groups: dict[str, list[Snapshot]] = {}
    for sn in snaps:
        groups.setdefault(_source_key(sn), []).append(sn)
    if not groups:
        raise SnapshotNotFound(f"job {job} has no snapshot to drill")
    as_of_ns = parse_as_of(as_of) if as_of else time.time_ns()
    return [pick_as_of(g, as_of_ns) for _, g in sorted(groups.items())]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _drill_files(repo: Repository, sn: Snapshot, drill: DrillConfig, sandbox: str,
                 checks: list[str]) -> None:
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
        digest = _sha256(restored)
        if digest != fh.sha256:
            raise SourceError(f"file hash check: {fh.path}: sha256 {digest[:16]}…, "
                              f"expected {fh.sha256[:16]}…")
        checks.append(f"{fh.path}: sha256 matches")
    for d, _, files in os.walk(target):
        for f in files:
            p = os.path.join(d, f)
            if _is_sqlite(p):
                problem = _sqlite_ok(p)
                rel = "/" + os.path.relpath(p, target)
                if problem:
                    raise SourceError(f"restored SQLite database {rel}: {problem}")
                checks.append(f"{rel}: SQLite quick_check ok")


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


def _assert_sql(kind: str, url: str, assertions: list[SqlAssertion],
                checks: list[str]) -> None:
    for a in assertions:
        got = _scalar(kind, url, a.query)
        if got != str(a.expect):
            raise SourceError(f"SQL assertion {a.query!r}: got {got!r}, expected "
                              f"{str(a.expect)!r}")
        checks.append(f"SQL {a.query!r} = {got!r}")


def _drill_source(repo: Repository, sn: Snapshot, job: str, drill: DrillConfig,
                  sandbox: str, checks: list[str]) -> None:
    from airflow_backup.sources.actions import restore_source, source_metadata
    from airflow_backup.sources.base import SourceURL

    meta = source_metadata(sn) or {}
    kind = str(meta.get("source", {}).get("kind", ""))
    scratch = f"abk_drill_{job.replace('-', '_').replace('.', '_')}_{os.getpid()}"[:60]
    if kind == "sqlite":
        target = f"sqlite:///{os.path.join(sandbox, scratch + '.db')}"
    else:
        if not drill.target:
            raise ConfigError(f"job {job}: drill.target must name a {kind} server for the "
                              "scratch database")
        target = SourceURL.parse(drill.target).with_database(scratch).redacted()
    try:
        report = restore_source(repo, sn, target)
        if drill.compare_recorded:
            checks.append(f"{sn.short_id}: {len(report.checks)} table(s) match the row counts "
                          "and checksums recorded at backup time")
        _assert_sql(kind, target, drill.sql, checks)
    finally:
        _drop_scratch(kind, target)


def record_drill(repo: Repository, result: DrillResult, lock_wait: float = 0.0) -> str:
    """Store ``result`` as a drill-record snapshot (waiting up to ``lock_wait`` seconds for
    an exclusive lock held by another process); return its id."""
    with repo.lock(exclusive=False, retry_seconds=lock_wait):
        tree, _ = repo.save_tree([])
        repo.flush()
        sn = Snapshot(time=format_time(datetime.now(UTC).astimezone()), tree=tree,
                      paths=[f"/airflow-backup-drill/{result.job}"],
                      hostname=socket.gethostname(), tags=[DRILL_TAG, job_tag(result.job)],
                      program_version=f"airflow-backup {__version__}",
                      extra={"airflow_backup": {"drill": {
                          k: v for k, v in result.to_json().items()
                          if k not in ("record", "notified")}}})
        return repo.save_snapshot(sn)


def drill_job(config: Config, job: str, *, as_of: str = "",
              session: JobSession | None = None) -> DrillResult:
    """Run a drill of ``job``; record and notify; return the result (never raises for a
    failed drill). Raise ConfigError for an unknown job or one without ``drill``."""
    if job not in config.jobs:
        raise ConfigError(f"no job {job!r} in the config")
    spec = config.jobs[job]
    drill = spec.drill or DrillConfig.model_validate({})
    session = session or JobSession(config)
    result = DrillResult(job, False, 0.0, drill.max_rto)
    sandbox = tempfile.mkdtemp(prefix=f"abk-drill-{job}-")
    started = time.monotonic()
    repo: Repository | None = None
    try:
        repo = session.repository(spec.repository)
        with repo.lock(exclusive=False,
                       retry_seconds=config.repositories[spec.repository].lock_wait):
            snaps = pick_snapshots(repo, job, as_of)
            result.snapshots = [s.id for s in snaps]
            for sn in snaps:
                if _source_key(sn) == "files":
                    _drill_files(repo, sn, drill, sandbox, result.checks)
                else:
                    _drill_source(repo, sn, job, drill, sandbox, result.checks)
        result.ok = True
    except (BackupError, OSError, ValueError) as exc:
        result.error = describe(exc)
    finally:
        result.rto = time.monotonic() - started
        shutil.rmtree(sandbox, ignore_errors=True)
    if result.ok and result.rto_exceeded:
        result.ok = False
        result.error = f"RTO {result.rto:.1f}s exceeds max_rto {drill.max_rto:.0f}s"
    if repo is not None:
        with contextlib.suppress(BackupError, OSError):
            result.record = record_drill(
                repo, result, config.repositories[spec.repository].lock_wait)
    notice = Notice(job, "drill_success" if result.ok else "drill_failure",
                    f"restore drill of job {job} {'passed' if result.ok else 'FAILED'} "
                    f"(RTO {result.rto:.1f}s, limit {drill.max_rto:.0f}s)",
                    step="" if result.ok else "drill", error=result.error,
                    snapshots=result.snapshots, details={"checks": len(result.checks)},
                    duration=result.rto)
    result.notified = send(config, notice)
    return result
