"""``drill``: restore jobs' newest (or --as-of) backups into a sandbox, validate, measure
the RTO, record the result in the repository, alert on failure; exit 1 if a drill failed."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.jobs_config_args import add_config_args, resolve_config_args
from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``drill`` parser."""
    p = sub.add_parser("drill", help="restore-drill jobs into a sandbox and measure the RTO")
    add_config_args(p, "jobs to drill (default: those with a drill section)")
    p.add_argument("--as-of", default="", metavar="TIME",
                   help="drill the newest backup taken at or before TIME (a "
                        "postgresql+pitr:// job: recover to TIME itself instead of a random "
                        "time in the recoverable window)")
    p.add_argument("--metrics-file", default="", metavar="FILE",
                   help="Prometheus textfile to write afterwards")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Drill; exit 1 if any drill failed or exceeded its RTO."""
    resolve_config_args(args)
    from airflow_backup.cli.context import cache_spec
    from airflow_backup.jobs.load import load_config
    from airflow_backup.jobs.runner import publish_metrics, run_drill

    cfg = load_config(args.config)
    names = list(args.jobs) or [n for n, j in cfg.jobs.items() if j.drill is not None]
    unknown = [n for n in names if n not in cfg.jobs]
    if unknown or not names:
        raise ConfigError(f"unknown job(s): {', '.join(unknown)}" if unknown
                          else "no job has a drill section; name the jobs to drill")
    status = 0
    cache = cache_spec(gopts)
    for name in names:
        out.line(f"drill {name}: restoring into a sandbox …")
        result, sent = run_drill(cfg, name, as_of=args.as_of, cache=cache)
        error = result.error.describe() if result.error else ""
        if out.json_mode:
            out.json({"message_type": "drill_result", **result.to_json(), "ok": result.ok,
                      "error": error, "rto_exceeded": result.rto_exceeded, "notified": sent})
        else:
            for c in result.checks:
                out.line(f"  ok: {c}")
            verdict = "PASSED" if result.ok else f"FAILED: {error}"
            out.result(f"drill {name}: {verdict} (RTO {result.rto:.2f}s, limit "
                       f"{result.max_rto:.0f}s; in {result.repository or '-'}; recorded as "
                       f"{result.record[:8] or '-'}; {sent} notification(s))")
        if not result.ok:
            status = 1
    publish_metrics(cfg, args.metrics_file, cache)
    return status
