"""``postgresql+pitr://`` sources in a jobs config: the URL scheme and its options, the
config's rules (the job's only source, WAL-aware retention), the drill options, the
runbook's commands and the status metrics of the WAL archive."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.errors import ConfigError, InvalidConfigFile
from airflow_backup.jobs.load import load_config, parse_config
from airflow_backup.jobs.repos import drill_options, job_watches, pitr_source
from airflow_backup.jobs.runbook import render_runbook
from airflow_backup.operations.status import JobStatus, render_metrics
from airflow_backup.sources.base import SourceURL
from airflow_backup.sources.pg_pitr import (
    drill_databases,
    is_pitr_url,
    server_text,
    server_url,
)
from airflow_backup.sources.registry import check_options, kind_of_scheme

ROOT = Path(__file__).resolve().parents[3]
URL = "postgresql+pitr://replicator@db.internal:5432/app?databases=billing,app"


def _config(**job: Any) -> dict[str, Any]:
    return {"repositories": {"main": {"url": "/srv/backups/pg", "password_file": "/etc/pw"}},
            "jobs": {"pg": {"sources": [URL], "repository": "main", **job}}}


def test_the_scheme_and_its_options() -> None:
    assert kind_of_scheme("postgresql+pitr") == "postgresql_pitr"
    assert is_pitr_url(URL) and not is_pitr_url("postgresql://u@h/db")
    url = SourceURL.parse(URL)
    assert drill_databases(url) == ["app", "billing"]
    assert drill_databases(SourceURL.parse("postgresql+pitr://u@h:5432")) == ["postgres"]
    assert server_url(url).redacted() == "postgresql://replicator@db.internal:5432"
    with_pw = SourceURL.parse("postgresql+pitr://u:p%40ss@h:5433/x?passfile=/f",
                              allow_password=True)
    assert server_text(with_pw) == "postgresql://u:p%40ss@h:5433?passfile=%2Ff"
    with pytest.raises(ConfigError, match="unknown option"):
        check_options(SourceURL.parse("postgresql+pitr://u@h/db?format=custom"))


def test_config_rules() -> None:
    cfg = parse_config(_config(retention={"keep_last": 3, "keep_within": "7d", "prune": True},
                               drill={"pitr_within": "6h", "max_rto": "20m"}))
    job = cfg.jobs["pg"]
    assert pitr_source(job) == URL
    options = drill_options(job)
    assert options.pitr_within == 6 * 3600 and options.pitr_databases == ("app", "billing")
    assert options.max_rto == 1200
    assert job_watches(cfg)[0].pitr is True
    with pytest.raises(InvalidConfigFile, match="only source"):
        parse_config(_config(sources=[URL, "/srv/files"]))
    with pytest.raises(InvalidConfigFile, match="keep_daily"):
        parse_config(_config(retention={"keep_daily": 7}))
    with pytest.raises(InvalidConfigFile, match="password"):
        parse_config(_config(sources=["postgresql+pitr://u:secret@h:5432"]))


def test_runbook_gives_the_pitr_commands() -> None:
    cfg = parse_config(_config())
    text = render_runbook(cfg, "/etc/jobs.yaml", with_state=False)
    lines = text.splitlines()
    restore = [ln for ln in lines if " pg restore " in ln and not ln.startswith("#")]
    assert restore == ["airflow-backup -r /srv/backups/pg pg restore --target-dir "
                       "/tmp/restore-pg-pgdata --target-action promote"]
    assert shlex.split(restore[0])[1:3] == ["-r", "/srv/backups/pg"]
    assert any(ln.startswith("# to a time in the window") and "--target-time" in ln
               for ln in lines)
    assert "airflow-backup -r /srv/backups/pg pg check   # the recoverable window; no gaps" \
        in lines
    assert any(ln.startswith("pg_ctl -D /tmp/restore-pg-pgdata") for ln in lines)
    assert any(ln.startswith("psql -h localhost -p 5433 -U replicator -d app") for ln in lines)
    assert "`airflow-backup -r /srv/backups/pg pg archive-wal %p`" in text
    # Not the dump restore of a postgresql:// source.
    assert "restore latest" not in text.split("**Plain restic equivalent**")[0]
    assert "--tag job=pg,pg-basebackup" in text


def test_metrics_of_the_wal_archive() -> None:
    st = JobStatus("pg", "main", True, "ok", archive_lag=42.5, last_wal="00000001000000000000000C",
                   last_wal_time=1.7e9, window_earliest="2025-01-01T00:00:00Z",
                   window_latest="2025-01-01T01:00:00Z")
    text = render_metrics([st])
    assert 'airflow_backup_wal_archive_lag_seconds{job="pg",repository="main",location=""} ' \
           "42.5" in text
    assert 'airflow_backup_recoverable_window_start_timestamp_seconds{job="pg",' \
           'repository="main",location=""} 1735689600.0' in text
    assert 'airflow_backup_recoverable_window_end_timestamp_seconds{job="pg",' \
           'repository="main",location=""} 1735693200.0' in text
    assert 'airflow_backup_wal_archive_ok{job="pg",repository="main",location=""} 1.0' in text
    plain = render_metrics([JobStatus("files", "main", True, "ok")])
    assert "wal_archive_lag_seconds{" not in plain and "wal_archive_ok{" not in plain


def test_the_jobs_config_example_in_docs_pitr_md_validates(tmp_path: Path) -> None:
    section = (ROOT / "docs/pitr.md").read_text().split("## 6. In a jobs config", 1)[1]
    (tmp_path / "jobs.yaml").write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    cfg = load_config(tmp_path / "jobs.yaml", env={})
    job = cfg.jobs["pg-main"]
    assert pitr_source(job) and drill_options(job).pitr_databases == ("app", "billing")
    assert drill_options(job).pitr_within == 24 * 3600
    archive = section.split("archive_command = '", 1)[1].split("'", 1)[0]
    assert archive == f"airflow-backup -r {cfg.repositories['pitr'].url} pg archive-wal %p"
