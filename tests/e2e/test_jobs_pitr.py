"""A ``postgresql+pitr://`` job through the real CLI, on a cluster of the test's own.

The server archives WAL with ``archive_command = 'airflow-backup -r REPO pg archive-wal %p'``
into the job's repository. ``airflow-backup run CONFIG`` takes a base backup (the snapshot
``pg basebackup`` would make, tagged ``pg-basebackup`` and ``job=NAME``); sentinel rows are
inserted and their WAL archived; ``airflow-backup drill CONFIG`` recovers a scratch server to
a random time in the recent window, runs amcheck and a sentinel-row SQL assertion and
reports the RTO; ``status --json`` shows the archive lag and the recoverable window (and the
metrics file has them); the ``pg restore`` command the runbook prints, run as printed,
recovers past the sentinel. Finally one archived WAL segment inside the window is forgotten
and the drill fails with a one-line cause naming the gap.

The job runner, drill, status and runbook run as this process's user; under root the
scratch server and its restore_command run as ``postgres`` (the drill's own logic), and the
commands the server's OS user runs (``init``, the runbook's ``pg restore``) run as
``postgres`` as in :mod:`test_pg_pitr`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_pg_pitr import (
    PASSWORD,
    _as_postgres,
    _cli,
    _connect,
    _env,
    _ids,
    _launcher,
    _mark,
    _recovered,
    _start_archiving,
    _tail,
    _wait_archived,
)

from support.cli import run_cli
from support.pg_cluster import own_cluster

pytestmark = pytest.mark.slow


def _last_json(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    doc = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert isinstance(doc, dict)
    return doc


def _ok(proc: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert proc.returncode == 0, (proc.stdout.decode()[-3000:], proc.stderr.decode()[-3000:])
    return proc


def test_pitr_job_backup_drill_status_runbook_and_a_gap(tmp_path: Path) -> None:
    job = f"orders-pitr-{os.getpid()}"
    with own_cluster() as cluster:
        base, repo_dir = cluster.base, cluster.base / "repo"
        _cli(base, repo_dir, "init")
        archive = " ".join([*_launcher(), "-r", str(repo_dir), "pg", "archive-wal", "%p"])
        _start_archiving(cluster, archive)
        password_file = base / "repository-password"
        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o600)
        if os.getuid() == 0:
            shutil.chown(password_file, "postgres")
        metrics = tmp_path / "metrics.prom"
        config = tmp_path / "jobs.yaml"
        source = f"postgresql+pitr://postgres@127.0.0.1:{cluster.port}/postgres"
        config.write_text(yaml.safe_dump({
            "metrics_file": str(metrics),
            "repositories": {"main": {"url": str(repo_dir),
                                      "password_file": str(password_file)}},
            "jobs": {job: {
                "sources": [source], "repository": "main", "rpo": "1h",
                "retention": {"keep_last": 1},
                "retry": {"attempts": 1},
                "drill": {"max_rto": "10m", "pitr_within": "1h",
                          "sql": [{"query": "SELECT count(*) FROM sentinel WHERE id = 0",
                                   "expect": 1}]}}}}))
        # This process's commands: their own cache (the server's user owns base/cache).
        env = {**_env(base), "AIRFLOW_BACKUP_CACHE_DIR": str(tmp_path / "cache")}
        env.pop("AIRFLOW_BACKUP_PASSWORD")

        def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
            return run_cli(None, *args, env=env, password=None, timeout=900)

        with _connect(cluster.port) as conn:
            conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, at timestamptz)")
            conn.execute("CREATE INDEX sentinel_at ON sentinel (at)")
            _mark(conn, 0)                                   # in the base backup

            first = _last_json(_ok(cli("--json", "run", str(config))))
            assert first["status"] == "success", first
            ran = _last_json(_ok(cli("--json", "run", str(config))))
            assert ran["status"] == "success", ran
            (snapshot,) = ran["snapshots"]
            # WAL-aware retention (keep_last: 1): the first base backup is forgotten with
            # the WAL only it needed.
            removed = ran["steps"]["retention"]["removed"]
            assert first["snapshots"][0] in removed and len(removed) > 1, ran["steps"]
            listed = _last_json(_ok(cli("--json", "-r", str(repo_dir), "--password-file",
                                        str(password_file), "pg", "list")))
            bases = {b["snapshot_id"]: b for b in listed["base_backups"]}
            assert list(bases) == [snapshot], listed       # PitrCatalog sees it
            tagged = json.loads(_ok(cli("--json", "-r", str(repo_dir), "--password-file",
                                        str(password_file), "snapshots", "--tag",
                                        f"job={job},pg-basebackup")).stdout)
            assert [s["id"] for s in tagged] == [snapshot]

            t1 = _mark(conn, 1)                              # after the base backup
            _wait_archived(conn)
            _mark(conn, 2)
            conn.execute("INSERT INTO sentinel VALUES (3, clock_timestamp())")
            last = _wait_archived(conn)                      # right after the last commit

        drilled = cli("--json", "drill", str(config))
        result = _last_json(drilled)
        assert drilled.returncode == 0 and result["ok"], (result["error"], result["checks"])
        checks = result["checks"]
        amcheck = [c for c in checks if c.startswith("amcheck:")]
        assert amcheck and "passed on" in amcheck[0], checks
        assert int(amcheck[0].split("passed on ")[1].split()[0]) > 100  # catalogs + sentinel
        assert any("count(*) FROM sentinel" in c and "'1'" in c for c in checks), checks
        assert result["snapshots"] == [snapshot]
        assert result["target_range"]["from"] <= result["target_time"] \
            <= result["target_range"]["to"], result
        assert 0 < result["rto"] < 600
        print(f"\ndrill: RTO {result['rto']:.1f}s, target {result['target_time']} in "
              f"{result['target_range']['from']} .. {result['target_range']['to']}")
        for c in checks:
            print(f"  {c}")

        # --as-of: recover to that time. Just after sentinel 1 a later commit exists: the
        # server stops at the target and promotes.
        rfc3339 = t1.replace(" ", "T") + ":00"           # PostgreSQL prints "+00"
        at_t1 = _last_json(cli("--json", "drill", str(config), "--as-of", rfc3339))
        assert at_t1["ok"], (at_t1["error"], at_t1["checks"])
        assert not any("recovered to its end" in c for c in at_t1["checks"]), at_t1["checks"]
        print(f"drill --as-of {t1}: RTO {at_t1['rto']:.1f}s")
        # At the window's end no commit follows the target
        # in the archived WAL (PostgreSQL: "recovery ended before configured recovery
        # target was reached"), and the drill recovers to the end of the archive instead.
        window = _last_json(_ok(cli("--json", "-r", str(repo_dir), "--password-file",
                                    str(password_file), "pg", "check")))["recoverable_window"]
        at_end = _last_json(cli("--json", "drill", str(config), "--as-of", window["latest"]))
        assert at_end["ok"], (at_end["error"], at_end["checks"])
        assert any("recovered to its end" in c for c in at_end["checks"]), at_end["checks"]
        print(f"drill --as-of the window's end: RTO {at_end['rto']:.1f}s")

        status = _last_json(cli("--json", "status", str(config)))
        (st,) = status["jobs"]
        assert status["ok"] is True, status
        assert st["last_wal"] >= last and 0 <= st["archive_lag"] < 600, st
        assert st["window_earliest"] == bases[snapshot]["stop_time"], st
        assert st["window_latest"] > st["window_earliest"] and st["wal_problem"] == ""
        assert st["rpo_breach"] is False and st["drill_ok"] is True
        text = _ok(cli("status", str(config))).stdout.decode()
        assert f"job {job}: WAL archive lag" in text and "recoverable window" in text, text
        prom = metrics.read_text()
        for name in ("airflow_backup_wal_archive_lag_seconds",
                     "airflow_backup_recoverable_window_start_timestamp_seconds",
                     "airflow_backup_recoverable_window_end_timestamp_seconds"):
            assert f'{name}{{job="{job}"' in prom, prom
        assert f'airflow_backup_wal_archive_ok{{job="{job}"' in prom
        print(f"status: archive lag {st['archive_lag']:.1f}s, window "
              f"{st['window_earliest']} .. {st['window_latest']}")

        # The runbook's commands, as printed: the password set-up, then pg restore (run as
        # the server's OS user, who starts the server on the restored directory).
        runbook = _ok(cli("runbook", str(config))).stdout.decode()
        (setup,) = [ln for ln in runbook.splitlines()
                    if ln.startswith("export AIRFLOW_BACKUP_PASSWORD_FILE=")][:1]
        var, _, value = setup.removeprefix("export ").partition("=")
        (restore,) = [ln for ln in runbook.splitlines()
                      if ln.startswith("airflow-backup -r") and " pg restore " in ln]
        argv = shlex.split(restore.split("   #")[0])
        assert argv[0] == "airflow-backup" and "--target-dir" in argv, restore
        data = Path(argv[argv.index("--target-dir") + 1])
        shutil.rmtree(data, ignore_errors=True)
        server_env = {k: v for k, v in _env(base).items() if k != "AIRFLOW_BACKUP_PASSWORD"}
        server_env[var] = shlex.split(value)[0]
        try:
            restored = subprocess.run(_as_postgres(*_launcher(), *argv[1:]), env=server_env,
                                      capture_output=True, text=True, timeout=600,
                                      check=False)
            assert restored.returncode == 0, (restored.stdout, restored.stderr)
            with _recovered(base, data) as port:
                ids = _ids(port)
            assert ids == [0, 1, 2, 3], (ids, _tail(base / f"{data.name}.log"))
        finally:
            shutil.rmtree(data, ignore_errors=True)

        # A gap inside the window: more segments, then one in the middle forgotten by hand.
        with _connect(cluster.port) as conn:
            conn.execute("CREATE TABLE filler (n int)")
            for n in range(3):
                conn.execute("INSERT INTO filler VALUES (%s)", (n,))
                _wait_archived(conn)
        wal = _last_json(_ok(cli("--json", "-r", str(repo_dir), "--password-file",
                                 str(password_file), "pg", "list")))["wal"]
        segments = sorted((w["name"], w["snapshot_id"]) for w in wal if len(w["name"]) == 24)
        after = [s for s in segments if s[0] > bases[snapshot]["start_wal"]]
        assert len(after) >= 4, after
        victim, victim_id = after[-2]      # past the base backup's own WAL, before the end
        _cli(base, repo_dir, "forget", victim_id)
        failed = cli("drill", str(config))
        assert failed.returncode == 1, failed.stdout.decode()
        verdict = [ln for ln in failed.stdout.decode().splitlines() if "FAILED" in ln]
        assert len(verdict) == 1 and f"gap in the WAL archive: {victim}" in verdict[0], \
            failed.stdout.decode()
        as_json = _last_json(cli("--json", "drill", str(config)))
        assert as_json["ok"] is False and "\n" not in as_json["error"]
        assert "WalGap" in as_json["error"] or "gap" in as_json["error"], as_json
        print(f"gap drill: {verdict[0].strip()}")
        status = _last_json(cli("--json", "status", str(config)))
        assert status["ok"] is False and victim in status["jobs"][0]["wal_problem"], status
