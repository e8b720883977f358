"""``status``: per job the newest snapshot and its age against the RPO, the last drill and
its RTO, and repository health; exits 1 on an RPO breach, a stale drill or an unreadable
repository (a monitoring probe). Writes Prometheus metrics when a metrics file is configured.
With ``--alert`` it is the status watch of :mod:`airflow_backup.jobs.watch` for cron: each
breach is alerted once (per ``--state-file``), as the Airflow ``status__<config>`` DAG does."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

from airflow_backup.cli.commands.jobs_config_args import add_config_args, resolve_config_args
from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``status`` parser."""
    p = sub.add_parser("status", help="freshness (age vs RPO), last drill and RTO, "
                                      "repository health per job; exit 1 on an RPO breach")
    add_config_args(p, "jobs to report (default: all)")
    p.add_argument("--metrics-file", default="", metavar="FILE",
                   help="Prometheus textfile to write (default: metrics_file of the config)")
    p.add_argument("--alert", action="store_true",
                   help="send rpo_breach / drill_stale alerts to the jobs' notification URLs")
    p.add_argument("--state-file", default="", metavar="FILE",
                   help="with --alert: remembers the breaches alerted, so each is alerted "
                        "once (created if missing)")
    p.set_defaults(func=run)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _read_state(path: str) -> dict[str, str]:
    from airflow_backup.jobs.watch import state_from_json

    try:
        with open(path, encoding="utf-8") as f:
            return state_from_json(json.load(f))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--state-file {path}: cannot read: {exc}") from None


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print the status; exit 1 if any RPO is breached or a repository is unhealthy."""
    resolve_config_args(args)
    from airflow_backup.cli.context import cache_spec
    from airflow_backup.jobs.load import load_config_isolated
    from airflow_backup.jobs.watch import watch
    from airflow_backup.operations.status import format_age
    from airflow_backup.storage.atomic import replace_file

    # As the Airflow status DAG: a job invalid on its own is reported (a config_error
    # breach, exit 1), the others are checked.
    loaded = load_config_isolated(args.config)
    for name in args.jobs:
        loaded.require(name)
    if args.state_file and not args.alert:
        raise ConfigError("--state-file needs --alert")
    previous = _read_state(args.state_file) if args.state_file else {}
    outcome = watch(loaded, previous, jobs=list(args.jobs) or None,
                    alert=args.alert, now=time.time(), metrics_file=args.metrics_file,
                    cache=cache_spec(gopts))
    if args.state_file:
        replace_file(args.state_file, json.dumps(outcome.state, indent=1).encode(), mode=0o600)
    sts = list(outcome.jobs)
    bad = [s for s in sts if s.rpo_breach or s.drill_stale or not s.healthy]
    for part, problems in loaded.broken.items():
        out.warn(f"{args.config}: {part} is invalid: {'; '.join(problems)}")
    if out.json_mode:
        out.json({"message_type": "status", "ok": not (bad or loaded.broken),
                  "jobs": [s.to_json() for s in sts], "invalid": sorted(loaded.broken),
                  "alerted": list(outcome.alerted), "delivered": outcome.delivered})
    else:
        rows = []
        for s in sts:
            rpo = "-" if s.rpo is None else (
                f"BREACH (>{format_age(s.rpo)})" if s.rpo_breach else f"ok (<{format_age(s.rpo)})")
            drill = "never" if s.drill_ok is None else (
                f"{'passed' if s.drill_ok else 'FAILED'} {_when(s.drill_time)}"
                + (f", RTO {s.drill_rto:.1f}s" if s.drill_rto is not None else ""))
            rows.append([s.job, s.last_snapshot[:8] or "-", _when(s.last_snapshot_time),
                         format_age(s.age), rpo, drill, "ok" if s.healthy else "UNHEALTHY"])
        out.table(["Job", "Snapshot", "Time", "Age", "RPO", "Last drill", "Repository"], rows)
        for s in sts:
            if s.last_wal or s.wal_problem or s.window_latest:
                window = (f"{s.window_earliest} .. {s.window_latest}" if s.window_latest
                          else "none")
                out.line(f"job {s.job}: WAL archive lag {format_age(s.archive_lag)} (newest "
                         f"{s.last_wal or '-'}), recoverable window {window}")
            if not s.healthy:
                out.warn(f"job {s.job}: repository problem: {s.health}")
            if s.rpo_breach:
                out.warn(f"job {s.job}: RPO BREACHED: last good backup "
                         f"{format_age(s.age)} old, RPO {format_age(s.rpo)}")
            if s.drill_stale:
                out.warn(f"job {s.job}: drill STALE: last drill "
                         + ("never" if s.drill_time is None else _when(s.drill_time))
                         + f", drill.max_age {format_age(s.drill_max_age)}")
        if args.alert:
            out.info(f"{len(outcome.alerted)} new breach(es) alerted, accepted by "
                     f"{outcome.delivered} notification URL(s)")
    return 1 if bad or loaded.broken else 0
