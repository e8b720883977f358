"""Backup jobs through the real CLI: malformed configs (exit 2, nothing run), a failing
source (one failure notification, no snapshot, non-zero exit), a broken primary with a
fallback (snapshot in the fallback, one degraded notification), status as an RPO probe with
Prometheus metrics that prometheus_client parses, and runbooks."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support.cli import run_cli
from support.receiver import receiver

PW = "jobs-test-pw"


def _init(repo: Path) -> None:
    r = run_cli(repo, "init", password=PW)
    assert r.returncode == 0, r.stderr


def _snapshots(repo: Path) -> list[dict[str, object]]:
    r = run_cli(repo, "snapshots", "--json", password=PW)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def _config(tmp: Path, job: dict[str, object], repos: dict[str, object] | None = None,
            **top: object) -> Path:
    data: dict[str, object] = {
        "repositories": repos or {"main": {"url": str(tmp / "repo"),
                                           "password_env": "JOB_REPO_PW"}},
        "jobs": {"nightly": {"repository": "main",
                             "retry": {"attempts": 2, "initial_delay": 0, "jitter": 0},
                             **job}},
        **top,
    }
    path = tmp / "jobs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _env(**extra: str) -> dict[str, str]:
    return {"JOB_REPO_PW": PW, **extra}


def _data(tmp: Path) -> Path:
    d = tmp / "data"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    (d / "a.txt").write_text("alpha\n")
    (d / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    return d


MALFORMED = {
    "negative keep_daily": ("retention", {"keep_daily": -1},
                            "jobs.nightly.retention.keep_daily: must be ≥ 0"),
    "bad cron": ("schedule", {"cron": "* * *"}, "jobs.nightly.schedule.cron: invalid cron"),
    "bad timezone": ("schedule", {"cron": "0 2 * * *", "timezone": "Nowhere/City"},
                     "jobs.nightly.schedule.timezone: unknown time zone"),
    "unknown repository": ("repository", "elsewhere", "jobs.nightly.repository: unknown"),
    "unknown copy target": ("copy_to", ["offsite"], "jobs.nightly.copy_to.0: unknown repository"),
    "copy to itself": ("copy_to", ["main"], "jobs.nightly.copy_to.0: the job's own repository"),
    "no sources": ("sources", [], "jobs.nightly.sources: must not be empty"),
    "bad rpo": ("rpo", "soon", "jobs.nightly.rpo: invalid duration"),
    "zero attempts": ("retry", {"attempts": 0}, "jobs.nightly.retry.attempts: must be ≥ 1"),
    "unknown key": ("colour", "blue", "jobs.nightly.colour: unknown key"),
    "bad event": ("notifications", {"on": ["always"]},
                  "jobs.nightly.notifications.on.0: must be one of"),
    "negative max_rto": ("drill", {"max_rto": -5}, "jobs.nightly.drill.max_rto: must be ≥ 0"),
    "password in source URL": ("sources", ["postgresql://u:secret@db/app"],
                               "jobs.nightly.sources: a source URL must not contain a password"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_exits_2_and_runs_nothing(tmp_path: Path, case: str) -> None:
    key, value, expected = MALFORMED[case]
    repo = tmp_path / "repo"
    _init(repo)
    data = _data(tmp_path)
    cfg = _config(tmp_path, {"sources": [str(data)], key: value})
    for command in (["config", "validate"], ["run"]):
        r = run_cli(None, *command, str(cfg), env=_env(), password=None)
        assert r.returncode == 2, (command, r.stderr)
        lines = r.stderr.decode().splitlines()
        assert any(line == f"{cfg}: {expected}" or line.startswith(f"{cfg}: {expected}")
                   for line in lines), lines
        assert "secret" not in r.stderr.decode()
    assert _snapshots(repo) == []


def test_failing_source_notifies_once_and_stores_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _init(repo)
    with receiver() as rx:
        cfg = _config(tmp_path, {"sources": [str(tmp_path / "missing-dir")],
                                 "notifications": {"urls": [rx.url]}})
        r = run_cli(None, "run", str(cfg), "--json", env=_env(), password=None)
        assert r.returncode != 0
        results = [json.loads(x) for x in r.stdout.splitlines()
                   if json.loads(x).get("message_type") == "job_result"]
        assert results[0]["status"] == "failed"
        assert results[0]["failed_step"] == "export"
        assert results[0]["attempts"] == 1  # a missing path is not retried (SourceMissing)
        assert len(rx.messages) == 1, rx.messages
    msg = rx.messages[0]
    assert msg["type"] == "failure"
    assert "nightly" in msg["title"] and "FAILURE" in msg["title"]
    assert "failed step: export" in msg["message"]
    assert "missing-dir" in msg["message"]
    assert "runbook:" in msg["message"]
    assert PW not in json.dumps(msg)
    assert _snapshots(repo) == []


def test_broken_primary_lands_in_fallback_with_one_degraded_notice(tmp_path: Path) -> None:
    primary, spare = tmp_path / "repo", tmp_path / "spare"
    _init(primary)
    _init(spare)
    data = _data(tmp_path)
    repos = {"main": {"url": str(primary), "password_env": "JOB_REPO_PW",
                      "retry": {"attempts": 2, "base_delay": 0, "max_delay": 0},
                      "fallbacks": ["spare"]},
             "spare": {"url": str(spare), "password_env": "JOB_REPO_PW"}}
    with receiver() as rx:
        cfg = _config(tmp_path, {"sources": [str(data)],
                                 "notifications": {"urls": [rx.url]}}, repos)
        faults = "failure_rate=1,operations=save,permanent=1"
        r = run_cli(None, "run", str(cfg), env=_env(AIRFLOW_BACKUP_FAULTS=faults),
                    password=None)
        assert r.returncode == 0, r.stderr
        assert b"DEGRADED" in r.stderr
        assert len(rx.messages) == 1, rx.messages
    assert rx.messages[0]["type"] == "warning"
    assert "DEGRADED" in rx.messages[0]["title"]
    assert "FALLBACK" in rx.messages[0]["message"]
    assert _snapshots(primary) == []
    snaps = _snapshots(spare)
    assert len(snaps) == 1
    assert "job=nightly" in snaps[0]["tags"] and "degraded" in snaps[0]["tags"]
    meta = snaps[0]["airflow_backup"]
    assert isinstance(meta, dict) and meta["degraded"]["primary"] == str(primary)
    # The next run with a healthy primary is normal again.
    r = run_cli(None, "run", str(cfg), env=_env(), password=None)
    assert r.returncode == 0 and b"DEGRADED" not in r.stderr
    assert len(_snapshots(primary)) == 1


def test_status_is_an_rpo_probe_and_metrics_parse(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _init(repo)
    data = _data(tmp_path)
    metrics = tmp_path / "metrics" / "abk.prom"
    cfg = _config(tmp_path, {"sources": [str(data)], "rpo": "${RPO:-1h}",
                             "retention": {"keep_last": 2}},
                  metrics_file=str(metrics))
    r = run_cli(None, "status", str(cfg), env=_env(), password=None)
    assert r.returncode == 1, "no backup yet: the RPO is breached"
    for _ in range(3):
        r = run_cli(None, "run", str(cfg), env=_env(), password=None)
        assert r.returncode == 0, r.stderr
    assert len(_snapshots(repo)) == 2, "retention keep_last=2"
    r = run_cli(None, "status", str(cfg), "--json", env=_env(), password=None)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["ok"] and status["jobs"][0]["rpo_breach"] is False
    time.sleep(1.2)
    r = run_cli(None, "status", str(cfg), env=_env(RPO="1s"), password=None)
    assert r.returncode == 1
    assert b"RPO BREACHED" in r.stderr
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    breach = families["airflow_backup_rpo_breach"].samples[0]
    assert breach.labels["job"] == "nightly" and breach.value == 1.0
    assert families["airflow_backup_last_success_timestamp_seconds"].samples[0].value > 0
    assert families["airflow_backup_last_bytes_added"].samples[0].value >= 0
    assert families["airflow_backup_repository_up"].samples[0].value == 1.0
    assert PW not in metrics.read_text()


def test_drill_and_runbook_for_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _init(repo)
    data = _data(tmp_path)
    import hashlib
    digest = hashlib.sha256((data / "a.txt").read_bytes()).hexdigest()
    with receiver() as rx:
        cfg = _config(tmp_path, {"sources": [str(data)], "notifications": {
            "urls": [rx.url], "on": ["drill_failure", "drill_success"]},
            "drill": {"max_rto": 600, "files": [{"path": str(data / "a.txt"),
                                                 "sha256": digest}]}})
        assert run_cli(None, "run", str(cfg), env=_env(), password=None).returncode == 0
        r = run_cli(None, "drill", str(cfg), "--json", env=_env(), password=None)
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout.splitlines()[-1])
        assert result["ok"] and result["rto"] > 0
        assert any("sha256 matches" in c for c in result["checks"])
        (data / "a.txt").write_text("changed after the backup\n")  # the live file drifts
        assert run_cli(None, "run", str(cfg), env=_env(), password=None).returncode == 0
        r = run_cli(None, "drill", str(cfg), env=_env(), password=None)
        assert r.returncode == 1 and b"sha256" in r.stdout
        assert [m["type"] for m in rx.messages] == ["success", "failure"]
    drills = [s for s in _snapshots(repo) if "airflow-backup-drill" in s["tags"]]
    assert len(drills) == 2
    r = run_cli(None, "runbook", str(cfg), "--output", str(tmp_path / "RUNBOOK.md"),
                env=_env(), password=None)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "RUNBOOK.md").read_text()
    assert "## Job `nightly`" in text and "restic -r" in text and "FAILED" in text
    assert PW not in text


def test_status_alert_sends_each_breach_once_and_again_when_it_returns(tmp_path: Path) -> None:
    """``status --alert --state-file`` under cron: an RPO breach and a stale drill are each
    alerted once however often the watch runs; a new backup clears the RPO breach, and a
    later breach (another newest snapshot) is alerted again."""
    repo = tmp_path / "repo"
    _init(repo)
    data = _data(tmp_path)
    state = tmp_path / "watch.json"
    with receiver() as rx:
        cfg = _config(tmp_path, {"sources": [str(data)], "rpo": "${RPO:-1h}",
                                 "drill": {"max_age": "1d"},
                                 "notifications": {"urls": [rx.url]}})
        watch = ["status", str(cfg), "--alert", "--state-file", str(state)]
        for _ in range(3):
            r = run_cli(None, *watch, env=_env(), password=None)
            assert r.returncode == 1, r.stderr
        titles = sorted(m["title"] for m in rx.messages)
        assert len(titles) == 2, titles  # no backup (RPO), no drill (stale): once each
        assert any("RPO BREACH" in t for t in titles) and any("DRILL STALE" in t
                                                              for t in titles)
        assert json.loads(state.read_text()).keys() == {"rpo_breach:nightly",
                                                        "drill_stale:nightly"}
        assert run_cli(None, "run", str(cfg), env=_env(), password=None).returncode == 0
        assert run_cli(None, "drill", str(cfg), "nightly", env=_env(),
                       password=None).returncode == 0
        r = run_cli(None, *watch, "--json", env=_env(), password=None)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["alerted"] == [] and json.loads(state.read_text()) == {}
        time.sleep(1.2)
        for _ in range(2):
            r = run_cli(None, *watch, env=_env(RPO="1s"), password=None)
            assert r.returncode == 1
        assert len(rx.messages) == 3, [m["title"] for m in rx.messages]
        assert "RPO BREACH" in rx.messages[-1]["title"]
        assert "Time" in run_cli(None, "status", str(cfg), env=_env(),
                                 password=None).stdout.decode()
    r = run_cli(None, "status", str(cfg), "--state-file", str(state), env=_env(),
                password=None)
    assert r.returncode == 1 and r.stderr == b"Fatal: --state-file needs --alert\n"


def test_a_repository_defined_by_an_airflow_connection_works_from_the_cli(
        tmp_path: Path) -> None:
    """``connection: ID``: outside Airflow the CLI reads AIRFLOW_CONN_<ID> (Airflow's JSON
    form here); run, status and the runbook use it, and the runbook names the connection
    for the password instead of printing it."""
    repo = tmp_path / "repo"
    _init(repo)
    data = _data(tmp_path)
    cfg = _config(tmp_path, {"sources": [str(data)]},
                  repos={"main": {"connection": "backup_repo"}})
    conn = json.dumps({"conn_type": "backup_repository", "host": str(repo), "password": PW})
    env = {"AIRFLOW_CONN_BACKUP_REPO": conn}
    r = run_cli(None, "run", str(cfg), env=env, password=None)
    assert r.returncode == 0, r.stderr
    assert len(_snapshots(repo)) == 1
    assert run_cli(None, "status", str(cfg), env=env, password=None).returncode == 0
    book = run_cli(None, "runbook", str(cfg), env=env, password=None)
    assert book.returncode == 0, book.stderr
    text = book.stdout.decode()
    assert f"airflow-backup -r {repo} snapshots" in text and PW not in text
    assert "airflow connections get backup_repo -o json" in text
    missing = run_cli(None, "run", str(cfg), password=None)
    assert missing.returncode == 1
    assert ("FAILED in store after 1 attempt(s): ConfigError: connection 'backup_repo' is not "
            "defined: outside Airflow, set AIRFLOW_CONN_BACKUP_REPO (JSON or URI, as Airflow "
            "reads it)") in missing.stdout.decode()
    both = _config(tmp_path, {"sources": [str(data)]},
                   repos={"main": {"connection": "backup_repo", "url": str(repo)}})
    r = run_cli(None, "run", str(both), env=env, password=None)
    assert r.returncode == 2 and b"with connection, the connection defines the repository: " \
        b"leave out url" in r.stderr


def test_notification_urls_can_live_in_a_connection(tmp_path: Path) -> None:
    """``notifications.connection``: the Apprise URLs (tokens) are in a connection — here
    AIRFLOW_CONN_ALERTS, as the CLI reads it — beside any ``urls`` of the config."""
    repo = tmp_path / "repo"
    _init(repo)
    with receiver() as rx:
        cfg = _config(tmp_path, {"sources": [str(_data(tmp_path))], "notifications": {
            "connection": "alerts", "on": ["success"]}})
        conn = json.dumps({"conn_type": "generic", "extra": {"urls": [rx.url]}})
        r = run_cli(None, "run", str(cfg), env=_env(AIRFLOW_CONN_ALERTS=conn), password=None)
        assert r.returncode == 0, r.stderr
        assert [m["title"] for m in rx.messages] == ["airflow-backup: job nightly: SUCCESS"]
        # An unreadable connection loses the alert (said in the log), never the backup.
        r = run_cli(None, "run", str(cfg), "-v", env=_env(), password=None)
        assert r.returncode == 0, r.stderr
        assert b"notification connection not read: connection 'alerts' is not defined" \
            in r.stderr
        assert len(rx.messages) == 1


def test_a_broken_job_does_not_stop_the_others_in_run_and_status(tmp_path: Path) -> None:
    """As in Airflow (one operation, two front ends): ``run`` runs the valid jobs, names the
    invalid one and exits 2; ``run CONFIG broken`` runs nothing; ``status`` reports it."""
    repo = tmp_path / "repo"
    _init(repo)
    cfg = _config(tmp_path, {"sources": [str(_data(tmp_path))]})
    data = yaml.safe_load(cfg.read_text())
    data["jobs"]["broken"] = {"repository": "main", "sources": ["/tmp"],
                              "retention": {"keep_daily": -1}}
    cfg.write_text(yaml.safe_dump(data))
    r = run_cli(None, "run", str(cfg), env=_env(), password=None)
    assert r.returncode == 2, r.stderr
    assert b"job nightly: SUCCESS" in r.stdout
    assert f"{cfg}: jobs.broken.retention.keep_daily: must be \u2265 0".encode() in r.stderr
    assert len(_snapshots(repo)) == 1
    r = run_cli(None, "run", str(cfg), "broken", env=_env(), password=None)
    assert r.returncode == 2 and b"keep_daily" in r.stderr and len(_snapshots(repo)) == 1
    assert run_cli(None, "run", str(cfg), "nightly", env=_env(),
                   password=None).returncode == 0
    r = run_cli(None, "status", str(cfg), "--json", env=_env(), password=None)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["invalid"] == ["jobs.broken"] and not doc["ok"]
    assert [j["job"] for j in doc["jobs"]] == ["nightly"]


def test_copy_to_keeps_an_offsite_copy_that_catches_up_after_a_failure(
        tmp_path: Path, restic_bin: str) -> None:
    """``copy_to``: after each backup the job's snapshots go to the offsite repository (its
    own password); while it is unreachable the job fails at the copy step with its snapshot
    stored, and the next run copies everything it missed."""
    from support.tools import run_restic

    offsite = tmp_path / "offsite"
    r = run_cli(offsite, "init", password="offsite-pw")
    assert r.returncode == 0, r.stderr
    _init(tmp_path / "repo")
    cfg = _config(tmp_path, {"sources": [str(_data(tmp_path))], "copy_to": ["offsite"]},
                  repos={"main": {"url": str(tmp_path / "repo"), "password_env": "JOB_REPO_PW"},
                         "offsite": {"url": str(offsite), "password_env": "OFFSITE_PW",
                                     "retry": {"attempts": 1}}})
    env = _env(OFFSITE_PW="offsite-pw")

    def run() -> subprocess.CompletedProcess[bytes]:
        return run_cli(None, "run", str(cfg), "--json", env=env, password=None)

    def offsite_originals() -> list[str]:
        out = run_cli(offsite, "snapshots", "--json", password="offsite-pw")
        return sorted(str(s.get("original", "")) for s in json.loads(out.stdout))

    first = run()
    assert first.returncode == 0, first.stderr
    steps = json.loads(first.stdout.splitlines()[-1])["steps"]
    assert list(steps)[-1] == "copy" and steps["copy"]["targets"][0]["repository"] == "offsite"
    assert offsite_originals() == sorted(s["id"] for s in _snapshots(tmp_path / "repo"))
    moved = tmp_path / "offsite-away"
    offsite.rename(moved)
    failed = run()
    assert failed.returncode == 10, failed.stderr  # the offsite repository is not there
    outcome = json.loads(failed.stdout.splitlines()[-1])
    assert outcome["failed_step"] == "copy" and len(_snapshots(tmp_path / "repo")) == 2
    moved.rename(offsite)
    third = run()
    assert third.returncode == 0, third.stderr
    assert offsite_originals() == sorted(s["id"] for s in _snapshots(tmp_path / "repo"))
    check = run_restic(offsite, "check", "--read-data", password="offsite-pw",
                       restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout


def test_a_jobs_exclusion_settings_store_what_backup_with_the_same_flags_stores(
        tmp_path: Path) -> None:
    """``exclude_caches``, ``exclude_if_present``, ``exclude_larger_than``, ``iexcludes`` and
    ``one_file_system`` in a job go through the same backup operation as the flags of
    ``backup``: ``run`` stores exactly the entries ``backup`` stores."""
    data = _data(tmp_path)
    (data / "cache").mkdir()
    (data / "cache" / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55\n")
    (data / "cache" / "blob").write_text("cached")
    (data / "private").mkdir()
    (data / "private" / ".nobackup").touch()
    (data / "private" / "secret.txt").write_text("not for the backup")
    (data / "big.iso").write_bytes(b"\0" * 5000)
    (data / "NOTES.TMP").write_text("scratch")
    repo = tmp_path / "repo"
    _init(repo)
    job = {"sources": [str(data)], "exclude_caches": True, "exclude_if_present": [".nobackup"],
           "exclude_larger_than": "4K", "iexcludes": ["*.tmp"], "one_file_system": True}
    r = run_cli(None, "run", str(_config(tmp_path, job)), "--json", env=_env(), password=None)
    assert r.returncode == 0, r.stderr
    r = run_cli(repo, "backup", str(data), "--exclude-caches", "--exclude-if-present",
                ".nobackup", "--exclude-larger-than", "4K", "--iexclude", "*.tmp", "-x",
                password=PW)
    assert r.returncode == 0, r.stderr

    def entries(snapshot: str) -> list[str]:
        out = run_cli(repo, "ls", "--json", snapshot, password=PW)
        assert out.returncode == 0, out.stderr
        nodes = [json.loads(line) for line in out.stdout.splitlines()]
        return [n["path"][len(str(data)):] for n in nodes
                if n.get("struct_type") == "node" and n["path"].startswith(str(data))]

    by_run, by_backup = (entries(s["id"]) for s in _snapshots(repo))
    # sub/b.bin (16 KiB) and big.iso are over 4K, NOTES.TMP matches *.tmp.
    assert by_run == by_backup == ["", "/a.txt", "/cache", "/cache/CACHEDIR.TAG", "/private",
                                   "/private/.nobackup", "/sub"]


def test_a_bad_exclusion_setting_is_a_config_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"sources": [str(_data(tmp_path))],
                             "exclude_larger_than": "1.5G", "exclude_if_present": [":x"]})
    r = run_cli(None, "config", "validate", str(cfg), env=_env(), password=None)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "exclude_larger_than" in err and "1.5" in err
    assert "exclude_if_present" in err and "no name for exclusion tagfile" in err
