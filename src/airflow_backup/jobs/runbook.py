"""Markdown recovery runbooks, one section per job, generated from the config and the
repository (last snapshot, last drill and its RTO).

Commands shown are exact for this config: ours (``airflow-backup -r … restore``) and the
plain restic equivalent, so a runbook works even without airflow-backup installed. Password
references are named, never resolved.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.config import Config, RepositoryConfig
from airflow_backup.jobs.export import is_source_url, shown_source
from airflow_backup.jobs.repos import job_watches
from airflow_backup.operations.status import JobStatus, statuses
from airflow_backup.operations.tags import job_tag, source_tag
from airflow_backup.redact import safe_url
from airflow_backup.sources.pg_pitr import is_pitr_url

__all__ = ["render_runbook"]


def _password_setup(rc: RepositoryConfig, restic: bool) -> str:
    var = "RESTIC_PASSWORD" if restic else "AIRFLOW_BACKUP_PASSWORD"
    if rc.connection:
        return (f"export {var}=\"$(airflow connections get {shlex.quote(rc.connection)} -o json"
                " | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"password\"])')\""
                f"   # the password of Airflow connection {rc.connection}")
    if rc.password_file:
        return f"export {var}_FILE={shlex.quote(rc.password_file)}"
    if rc.password_env:
        return f'export {var}="${rc.password_env}"   # the job reads it from {rc.password_env}'
    return f"export {var}_COMMAND={shlex.quote(rc.password_command or '')}"


def _repository_url(rc: RepositoryConfig) -> str:
    """The repository's URL; for one defined by an Airflow connection, the connection's (as
    this process can read it), else a placeholder naming the connection."""
    if not rc.connection:
        return rc.url
    from airflow_backup.connections import get_connection
    from airflow_backup.operations.connection_spec import connection_url

    try:
        return connection_url(get_connection(rc.connection))
    except ConfigError:
        return f"REPOSITORY-URL-OF-CONNECTION-{rc.connection}"


def _restic_url(url: str) -> str:
    if url.startswith("s3://"):
        return "s3:s3.amazonaws.com/" + url.removeprefix("s3://")
    return url.removeprefix("file://")


def _when(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _section(config: Config, name: str, st: JobStatus | None, config_path: str) -> list[str]:
    job = config.jobs[name]
    rc = config.repositories[job.repository]
    # Credentials never go into the runbook: the commands take them from the environment.
    url = safe_url(_repository_url(rc))
    repo = shlex.quote(url)
    tag = job_tag(name)
    repo_arg = shlex.quote(_restic_url(url))
    out = [f"## Job `{name}`", ""]
    if job.description:
        out += [job.description, ""]
    out += ["**What is backed up**", ""]
    sources = [(shown_source(s), is_source_url(s)) for s in job.sources]
    out += [f"- `{s}`" + (" (database export)" if is_url else "") for s, is_url in sources]
    out += ["", "**Where**", "",
            f"- repository `{job.repository}`: `{url}`"]
    for fb in rc.fallbacks:
        out.append(f"- fallback `{fb}`: `{safe_url(_repository_url(config.repositories[fb]))}` "
                   "(snapshots there are "
                   "tagged `degraded`)")
    sched = f"`{job.schedule.cron}` ({job.schedule.timezone})" if job.schedule else "not set"
    r = job.retention
    keeps = [f"{k}={getattr(r, k)}" for k in ("keep_last", "keep_hourly", "keep_daily",
                                               "keep_weekly", "keep_monthly", "keep_yearly")
             if getattr(r, k)]
    if r.keep_within:
        keeps.append(f"keep_within={r.keep_within}")
    out += ["", f"**Schedule**: {sched}. **Retention**: {', '.join(keeps) or 'keep all'}"
            + (" then prune" if r.prune else "") + ". **RPO**: "
            + (f"{job.rpo:.0f}s" if job.rpo else "not set") + ".", ""]
    if st is not None:
        out += ["**State when this runbook was generated**", "",
                f"- last snapshot: `{st.last_snapshot[:8] or 'none'}` at "
                f"{_when(st.last_snapshot_time)}"
                + (" — **RPO BREACHED**" if st.rpo_breach else ""),
                "- last drill: " + ("never" if st.drill_ok is None else
                                    f"{'passed' if st.drill_ok else 'FAILED'} at "
                                    f"{_when(st.drill_time)}, measured RTO "
                                    f"{st.drill_rto or 0:.1f}s"
                                    + (f" (limit {st.drill_max_rto:.0f}s)"
                                       if st.drill_max_rto else "")),
                f"- repository health: {st.health}", ""]
    out += ["**Prerequisites**", "",
            "- `airflow-backup` (`pip install airflow-backup`) or the plain `restic` binary",
            "- the repository password: " + _password_setup(rc, False).split("  #")[0],
            *([f"- the server's archive_command (postgresql.conf, with archive_mode = on): "
               f"`airflow-backup -r {repo} pg archive-wal %p`"]
              if any(is_pitr_url(x) for x in job.sources) else []),
            "- network access to the repository" + (
                " and to the database server (client tools: psql/pg_restore, mysql)"
                if any(is_source_url(s) for s in job.sources) else ""), "",
            "**List versions**", "", "```sh", _password_setup(rc, False),
            f"airflow-backup -r {repo} snapshots --tag {tag}",
            f"airflow-backup status {shlex.quote(config_path)} {name}", "```", "",
            "**Restore** (newest, or the state at a point in time)", "", "```sh"]
    several = sum(1 for _, is_url in sources if is_url) > 1
    for raw, (s, is_url) in zip(job.sources, sources, strict=True):
        if is_pitr_url(raw):
            out += _pitr_restore(repo, name, raw, st)
        elif is_url:
            # --path: the snapshot of this kind of source, not another source's of the job;
            # with several data sources, the source's own tag tells them apart.
            pick = _source_pick(raw, tag, several)
            out += [f"airflow-backup -r {repo} restore latest {pick} "
                    f"--target {shlex.quote(s)}   # into the original server; or a new URL",
                    f"airflow-backup -r {repo} restore {pick} --as-of "
                    f"'YYYY-MM-DD HH:MM' --target {shlex.quote(s)}"]
        else:
            out += [f"airflow-backup -r {repo} restore latest --tag {tag} --path "
                    f"{shlex.quote(s)} --target /tmp/restore-{name}",
                    f"airflow-backup -r {repo} restore --tag {tag} --path {shlex.quote(s)} "
                    f"--as-of 'YYYY-MM-DD HH:MM' --target /tmp/restore-{name}"]
    out += [f"airflow-backup drill {shlex.quote(config_path)} {name}   # rehearse into a "
            "sandbox first", "```", "", "**Plain restic equivalent**", "", "```sh",
            _password_setup(rc, True),
            f"restic -r {repo_arg} snapshots --tag {tag}"]
    paths = [s for s, is_url in sources if not is_url]
    if paths:
        # --path: the job's file snapshot, not one of its data sources' snapshots.
        selected = " ".join(
            f"--path {shlex.quote(os.path.abspath(os.path.expanduser(p.removeprefix('file://'))))}"
            for p in paths)
        out.append(f"restic -r {repo_arg} restore latest --tag {tag} {selected} "
                   f"--target /tmp/restore-{name}")
    out += ["```", ""]
    tools = [line for s in job.sources if is_source_url(s) and not is_pitr_url(s)
             for line in _tool_restore(s, f"/tmp/restore-{name}", repo_arg,
                                       _source_pick(s, tag, several))]
    if tools:
        out += ["With restic alone, each data source is its own snapshot of dump files; restore "
                "it and load it into a new, empty database with the database's own tools:",
                "", "```sh", *tools, "```", ""]
    if any(is_pitr_url(s) for s in job.sources):
        out += ["With restic alone: a base backup is the file `base.tar` of a snapshot tagged "
                "`pg-basebackup` (extract it into an empty data directory) and every WAL file "
                "is its own snapshot tagged `wal` and `segment=NAME`; `airflow-backup pg "
                "restore` picks the base backup and writes the recovery settings for you.", "",
                "```sh", f"restic -r {repo_arg} snapshots --tag {tag},pg-basebackup",
                f"restic -r {repo_arg} restore latest --tag {tag},pg-basebackup --target "
                f"/tmp/restore-{name}   # then: tar -xf /tmp/restore-{name}/base.tar -C "
                "DATADIR", "```", ""]
    return out


def _pitr_restore(repo: str, name: str, source: str, st: JobStatus | None) -> list[str]:
    """Return the restore lines of a ``postgresql+pitr://`` source: check the archive,
    restore a base backup and recover (to the end of the archive, or a time in the
    recoverable window), start the server, check it."""
    from airflow_backup.sources.base import SourceURL

    url = SourceURL.parse(source, allow_password=True)
    data = f"/tmp/restore-{name}-pgdata"
    window = (f" (recoverable when this runbook was generated: {st.window_earliest} .. "
              f"{st.window_latest})" if st is not None and st.window_latest else "")
    login = f" -U {shlex.quote(url.username)}" if url.username else ""
    db = shlex.quote(url.database or "postgres")
    return [
        f"airflow-backup -r {repo} pg check   # the recoverable window; no gaps",
        f"airflow-backup -r {repo} pg list    # the base backups",
        "# to a time in the window instead of its end, add --target-time "
        f"'YYYY-MM-DD HH:MM:SS+00'{window}",
        f"airflow-backup -r {repo} pg restore --target-dir {data} --target-action promote",
        f"pg_ctl -D {data} -l {data}.log -o '-p 5433 -c archive_mode=off' -w -t 3600 start"
        "   # as the server's OS user (Debian: /usr/lib/postgresql/VERSION/bin/pg_ctl)",
        f"psql -h localhost -p 5433{login} -d {db} -At -c 'SELECT pg_is_in_recovery()'"
        "   # f: recovered and promoted",
    ]


#: The top directory of each source kind's snapshots (``restore --path``).
_KIND_DIRS = {"postgresql": "postgresql", "mysql": "mysql", "sqlite": "sqlite",
              "table": "table", "object_store": "objects", "airflow": "airflow"}


def _source_pick(source: str, tag: str, several: bool) -> str:
    """Return the restore options that select ``source``'s snapshots of the job tagged
    ``tag``: its kind's ``--path``, and its ``source=`` tag when the job has several data
    sources (two databases, or an Airflow home beside a SQLite file, share a path)."""
    from airflow_backup.sources.base import SourceURL
    from airflow_backup.sources.registry import kind_of_scheme

    try:
        url = SourceURL.parse(source, allow_password=True)
        kind = kind_of_scheme(url.scheme)
    except ConfigError:
        return f"--tag {tag}"
    tags = f"{tag},{source_tag(url.redacted())}" if several else tag
    where = f" --path /{_KIND_DIRS[kind]}" if kind in _KIND_DIRS else ""
    return f"--tag {tags}{where}"


def _tool_restore(source: str, target: str, repo: str, pick: str) -> list[str]:
    """Return the plain restic + database-tool commands that restore ``source``'s newest
    snapshot (selected by ``pick``, from :func:`_source_pick`); for kinds only airflow-backup
    can load back, the restic command that gives back the stored files."""
    from airflow_backup.sources.base import SourceURL

    try:
        url = SourceURL.parse(source, allow_password=True)
    except ConfigError:
        return []
    scheme, db = url.scheme.lower(), url.database
    restore = f"restic -r {repo} restore latest {pick} --target {shlex.quote(target)}"
    conn = []
    if url.host:
        conn += ["-h", url.host]
    if url.port:
        conn += ["-p", str(url.port)]
    if scheme in ("postgresql", "postgres") and db:
        if url.username:
            conn += ["-U", url.username]
        args = " ".join(shlex.quote(a) for a in conn)
        fmt = url.param("format", "plain")
        dump = f"{target}/postgresql/{db}" + {"plain": ".sql", "custom": ".pgdump",
                                              "directory": ".dir"}.get(fmt, ".sql")
        load = (f"psql {args} -d {shlex.quote(db)} -v ON_ERROR_STOP=1 -f {shlex.quote(dump)}"
                if fmt == "plain" else
                f"pg_restore {args} -d {shlex.quote(db)} {shlex.quote(dump)}")
        return [restore,
                f"createdb {args} {shlex.quote(db)}   # skip if the database still exists",
                load]
    if scheme in ("mysql", "mariadb") and db:
        conn = [c.replace("-p", "-P") if c == "-p" else c for c in conn]
        if url.username:
            conn += ["-u", url.username]
        args = " ".join(shlex.quote(a) for a in conn)
        dump = f"{target}/mysql/{db}.sql"
        create = shlex.quote(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        return [restore,
                f"mysql {args} -e {create}",
                f"mysql {args} {shlex.quote(db)} < {shlex.quote(dump)}"]
    if scheme == "sqlite":
        name = url.path.rstrip("/").rsplit("/", 1)[-1]
        return [restore,
                f"cp {shlex.quote(f'{target}/sqlite/{name}')} "
                f"{shlex.quote(url.path)}   # with the application stopped"]
    # Object-store prefixes, table exports and Airflow metadata: restic gives back the
    # stored files (objects, Parquet increments, JSON exports); loading them is ours.
    return [f"{restore}   # the stored files; load them with the airflow-backup lines above"]


def render_runbook(config: Config, config_path: str, jobs: list[str] | None = None,
                   with_state: bool = True) -> str:
    """Return the runbook for ``jobs`` (default: all). ``with_state`` reads the repositories
    for the last snapshot and drill (a failing repository is reported, not raised)."""
    names = jobs or list(config.jobs)
    sts = {s.job: s for s in statuses(job_watches(config, names))} if with_state else {}
    out = ["# Recovery runbook", "",
           f"Generated by airflow-backup from `{config_path}` on "
           f"{datetime.now().strftime('%Y-%m-%d %H:%M')}. Regenerate with "
           f"`airflow-backup runbook {shlex.quote(config_path)} --output RUNBOOK.md`.", ""]
    for name in names:
        out += _section(config, name, sts.get(name), config_path)
    return "\n".join(out)
