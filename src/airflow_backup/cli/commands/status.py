"""``status``: per job the newest snapshot and its age against the RPO, the last drill and
its RTO, and repository health; exits 1 on an RPO breach or an unreadable repository (a
monitoring probe). Writes Prometheus metrics when a metrics file is configured."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``status`` parser."""
    p = sub.add_parser("status", help="freshness (age vs RPO), last drill and RTO, "
                                      "repository health per job; exit 1 on an RPO breach")
    p.add_argument("config", help="jobs config file (YAML)")
    p.add_argument("jobs", nargs="*", help="jobs to report (default: all)")
    p.add_argument("--metrics-file", default="", metavar="FILE",
                   help="Prometheus textfile to write (default: metrics_file of the config)")
    p.set_defaults(func=run)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the status; exit 1 if any RPO is breached or a repository is unhealthy."""
    from airflow_backup.cli.context import cache_spec
    from airflow_backup.jobs.load import load_config
    from airflow_backup.jobs.repos import job_watches
    from airflow_backup.operations.status import statuses, write_metrics

    cfg = load_config(args.config)
    unknown = [n for n in args.jobs if n not in cfg.jobs]
    if unknown:
        raise ConfigError(f"unknown job(s): {', '.join(unknown)}")
    sts = statuses(job_watches(cfg, list(args.jobs) or None, cache_spec(gopts)), now=time.time())
    metrics = args.metrics_file or cfg.metrics_file
    if metrics:
        write_metrics(metrics, sts)
    bad = [s for s in sts if s.rpo_breach or not s.healthy]
    if out.json_mode:
        out.json({"message_type": "status", "ok": not bad, "jobs": [s.to_json() for s in sts]})
    else:
        rows = []
        for s in sts:
            rpo = "-" if s.rpo is None else (
                f"BREACH (>{_age(s.rpo)})" if s.rpo_breach else f"ok (<{_age(s.rpo)})")
            drill = "never" if s.drill_ok is None else (
                f"{'passed' if s.drill_ok else 'FAILED'} {_when(s.drill_time)}"
                + (f", RTO {s.drill_rto:.1f}s" if s.drill_rto is not None else ""))
            rows.append([s.job, s.last_snapshot[:8] or "-", _when(s.last_snapshot_time),
                         _age(s.age), rpo, drill, "ok" if s.healthy else "UNHEALTHY"])
        out.table(["Job", "Snapshot", "Time", "Age", "RPO", "Last drill", "Repository"], rows)
        for s in sts:
            if not s.healthy:
                out.warn(f"job {s.job}: repository problem: {s.health}")
            if s.rpo_breach:
                out.warn(f"job {s.job}: RPO BREACHED: last good backup "
                         f"{_age(s.age)} old, RPO {_age(s.rpo)}")
    return 1 if bad else 0
