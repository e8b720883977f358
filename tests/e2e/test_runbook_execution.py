"""Runbooks are tested by running them: after ``run`` and ``drill`` of a job with files,
three PostgreSQL databases (plain, custom and directory dumps) and SQLite, of a MariaDB job,
and of a job with an object-store prefix, an incremental table export and Airflow's
metadata, the data is lost; then every command block of the generated runbook is run
exactly as printed — only the placeholders a human fills in are replaced — once with
airflow-backup and once with plain restic and the databases' own tools, and the restored
data is compared with the original."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cli import FAST_KDF, run_cli
from support.sources import (
    MY_BASE,
    PG_BASE,
    airflow_bin,
    airflow_state,
    airflow_templates,
    clone_home,
    db_tools,
    maria,
    moto_endpoint,
    my_fingerprint,
    pg,
    pg_fingerprint,
    sqlite_fingerprint,
    unique,
)
from support.tools import require_tool

# fixtures used by name
__all__ = ["airflow_bin", "airflow_templates", "db_tools", "maria", "moto_endpoint", "pg"]

pytestmark = pytest.mark.slow

PW = "runbook-exec-pw"


def _blocks(section: str, heading: str) -> list[str]:
    """Return the lines of the first ```sh block after ``heading`` in ``section``."""
    rest = section.split(heading, 1)[1]
    block = re.search(r"```sh\n(.*?)```", rest, re.S)
    assert block, heading
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def _run_block(lines: list[str], env: dict[str, str], cwd: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    proc = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{script}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _lose_everything(data: Path, sqlite_db: Path, pg_dbs: list[str], my_db: str,
                     pg_conn: Any, my_conn: Any) -> None:
    shutil.rmtree(data, ignore_errors=True)
    sqlite_db.unlink(missing_ok=True)
    for db in pg_dbs:
        pg_conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    with my_conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{my_db}`")


def test_every_runbook_command_block_restores_the_data_as_printed(
        tmp_path: Path, db_tools: dict[str, str], pg: Any, maria: Any) -> None:
    restic = require_tool("restic")
    pg.autocommit = True
    maria.autocommit(True)
    plain_db, custom_db, my_db = unique("rb_plain"), unique("rb_custom"), unique("rb_my")
    dir_db = unique("rb_dir")
    for db in (plain_db, custom_db, dir_db):
        pg.execute(f'CREATE DATABASE "{db}"')
        with __import__("psycopg").connect(host="127.0.0.1", user="postgres", dbname=db,
                                           autocommit=True) as c:
            c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            c.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
    with maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{my_db}`")
        cur.execute(f"CREATE TABLE `{my_db}`.t (id int PRIMARY KEY, v text)")
        cur.executemany(f"INSERT INTO `{my_db}`.t VALUES (%s, %s)",
                        [(i, f"row {i}") for i in range(300)])
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    sqlite_db = tmp_path / "app.db"
    import sqlite3
    con = sqlite3.connect(sqlite_db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(200)])
    con.commit()
    con.close()
    before = {"files": {p.relative_to(data): p.read_bytes() for p in data.rglob("*")
                        if p.is_file()},
              "plain": pg_fingerprint(plain_db), "custom": pg_fingerprint(custom_db),
              "dir": pg_fingerprint(dir_db),
              "my": my_fingerprint(my_db), "sqlite": sqlite_fingerprint(sqlite_db)}

    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    job = unique("rbjob")
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": {"main": {"url": str(repo), "password_env": "RB_PW"}},
        "jobs": {job: {"repository": "main", "sources": [
            # Three PostgreSQL databases in one job: the runbook must tell their snapshots apart.
            str(data), f"{PG_BASE}/{plain_db}", f"sqlite://{sqlite_db}",
            f"{PG_BASE}/{custom_db}?format=custom", f"{PG_BASE}/{dir_db}?format=directory"],
            "drill": {"target": f"{PG_BASE}/postgres"}},
                 f"{job}m": {"repository": "main", "sources": [f"{MY_BASE}/{my_db}"]}}}))
    env = {"RB_PW": PW}
    assert run_cli(None, "run", str(config), env=env).returncode == 0
    drill = run_cli(None, "drill", str(config), job, env=env)
    assert drill.returncode == 0, drill.stderr  # a drill record exists from here on
    book = tmp_path / "RUNBOOK.md"
    made = run_cli(None, "runbook", str(config), "--output", str(book), env=env)
    assert made.returncode == 0, made.stderr
    sections = {s.split("`", 1)[0]: s for s in book.read_text().split("## Job `")[1:]}

    shell_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    shell_env.update(RB_PW=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF,
                     PATH=f"{Path(restic).parent}:{Path(os.sys.executable).parent}:"
                          f"{os.environ['PATH']}")

    def check(restored_files: Path) -> None:
        got = {p.relative_to(restored_files): p.read_bytes() for p in restored_files.rglob("*")
               if p.is_file()}
        assert got == before["files"]
        assert pg_fingerprint(plain_db) == before["plain"]
        assert pg_fingerprint(custom_db) == before["custom"]
        assert pg_fingerprint(dir_db) == before["dir"]
        assert my_fingerprint(my_db) == before["my"]
        assert sqlite_fingerprint(sqlite_db) == before["sqlite"]

    # 1. Plain restic and the databases' own tools, exactly as printed.
    for name in (job, f"{job}m"):
        shutil.rmtree(f"/tmp/restore-{name}", ignore_errors=True)
    _lose_everything(data, sqlite_db, [plain_db, custom_db, dir_db], my_db, pg, maria)
    for name in (job, f"{job}m"):
        section = sections[name]
        lines = _blocks(section, "**Plain restic equivalent**")
        lines += _blocks(section, "With restic alone")
        _run_block(lines, shell_env, tmp_path)
    check(Path(f"/tmp/restore-{job}") / str(data).lstrip("/"))

    # 2. airflow-backup, exactly as printed (the "latest" lines; --as-of lines are the same
    #    command with a time a human picks).
    for name in (job, f"{job}m"):
        shutil.rmtree(f"/tmp/restore-{name}", ignore_errors=True)
    _lose_everything(data, sqlite_db, [plain_db, custom_db, dir_db], my_db, pg, maria)
    for name in (job, f"{job}m"):
        # The runbook's order: "List versions" (sets the password up), then "Restore".
        lines = _blocks(sections[name], "**List versions**") + [
            ln for ln in _blocks(sections[name], "**Restore**")
            if "--as-of" not in ln and " drill " not in ln]
        _run_block(lines, shell_env, tmp_path)
    check(Path(f"/tmp/restore-{job}") / str(data).lstrip("/"))
    for name in (job, f"{job}m"):
        shutil.rmtree(f"/tmp/restore-{name}", ignore_errors=True)


def test_object_store_table_and_airflow_runbooks_restore_as_printed(
        tmp_path: Path, pg: Any, moto_endpoint: str, airflow_bin: str,
        airflow_templates: dict[str, Path]) -> None:
    """The kinds only airflow-backup can load back (an object-store prefix, an incremental
    table export, Airflow's metadata): one job holding all three, its data lost, and the
    runbook's airflow-backup block run as printed; plain restic gives back the stored files."""
    import s3fs

    restic = require_tool("restic")
    pg.autocommit = True
    db = unique("rb_table")
    pg.execute(f'CREATE DATABASE "{db}"')
    with __import__("psycopg").connect(host="127.0.0.1", user="postgres", dbname=db,
                                       autocommit=True) as c:
        c.execute("CREATE TABLE events (id bigserial PRIMARY KEY, payload text, at timestamptz)")
        c.execute("INSERT INTO events (payload, at) SELECT 'p' || g, '2024-01-01'::timestamptz"
                  " + g * interval '1 minute' FROM generate_series(1, 400) g")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_endpoint},
                           skip_instance_cache=True)
    bucket = unique("rb-bkt").replace("_", "-")
    fs.mkdir(bucket)
    objects = {f"logs/{i:02d}.log": os.urandom(5_000 + i) for i in range(12)}
    for key, body in objects.items():
        fs.pipe(f"{bucket}/{key}", body)
    home = clone_home(airflow_templates["src"], tmp_path / "home")
    before_airflow = airflow_state(airflow_bin, home, tmp_path)
    before_table = pg_fingerprint(db)

    repo = tmp_path / "repo"
    assert run_cli(repo, "init", password=PW).returncode == 0
    job = unique("rbkinds")
    q = f"?endpoint_url={moto_endpoint}"
    config = tmp_path / "jobs.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": {"main": {"url": str(repo), "password_env": "RB_PW"}},
        "jobs": {job: {"repository": "main", "sources": [
            f"s3://{bucket}/logs{q}", f"table+{PG_BASE}/{db}?table=events&watermark=id",
            f"airflow://{home}?airflow={airflow_bin}"],
            "drill": {"target": f"{PG_BASE}/postgres"}}}}))
    env = {"RB_PW": PW}
    ran = run_cli(None, "run", str(config), env=env)
    assert ran.returncode == 0, ran.stderr
    drill = run_cli(None, "drill", str(config), job, "--json", env=env)
    assert drill.returncode == 0, drill.stderr  # a drill record exists from here on
    # Each source was restored into its own scratch place and compared, then removed.
    assert len(json.loads(drill.stdout)["snapshots"]) == 3
    assert pg.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                      (f"abk_drill_{job}%",)).fetchone() == (0,)
    book = tmp_path / "RUNBOOK.md"
    assert run_cli(None, "runbook", str(config), "--output", str(book),
                   env=env).returncode == 0
    section = book.read_text().split("## Job `")[1]
    shell_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    shell_env.update(RB_PW=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF,
                     PATH=f"{Path(restic).parent}:{Path(os.sys.executable).parent}:"
                          f"{os.environ['PATH']}")

    # Lose everything: the bucket's objects, the table's database, Airflow's home.
    fs.rm(f"{bucket}/logs", recursive=True)
    pg.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    pg.execute(f'CREATE DATABASE "{db}"')
    shutil.rmtree(home)
    home = clone_home(airflow_templates["empty"], tmp_path / "home")

    lines = _blocks(section, "**List versions**") + [
        ln for ln in _blocks(section, "**Restore**")
        if "--as-of" not in ln and " drill " not in ln]
    _run_block(lines, shell_env, tmp_path)
    fs.invalidate_cache()
    assert {p.split("/", 1)[1]: fs.cat(p) for p in fs.find(f"{bucket}/logs")} == objects
    assert pg_fingerprint(db) == before_table
    assert airflow_state(airflow_bin, home, tmp_path) == before_airflow

    # Plain restic: each source's snapshot gives back its stored files.
    lines = _blocks(section, "**Plain restic equivalent**")
    lines += _blocks(section, "With restic alone")
    _run_block(lines, shell_env, tmp_path)
    got = Path(f"/tmp/restore-{job}")
    assert {p.name: p.read_bytes() for p in (got / "objects").rglob("*.log")} == {
        k.split("/")[-1]: v for k, v in objects.items()}
    import pyarrow.parquet as pq
    assert pq.read_table(got / "table" / "events.parquet").num_rows == 400
    assert json.loads((got / "airflow" / "variables.json").read_text()) == \
        before_airflow["variables"]
    shutil.rmtree(got, ignore_errors=True)
    pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
