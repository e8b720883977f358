"""``run``: run backup jobs of a config file (all, or those named), then write metrics."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.commands.jobs_config_args import add_config_args, resolve_config_args
from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer, human_size
from airflow_backup.cli.progress import make_progress
from airflow_backup.errors import EXIT_CONFIG

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``run`` parser."""
    p = sub.add_parser("run", help="run backup jobs: export, validate, store, verify, "
                                   "retention, notify")
    add_config_args(p, "jobs to run (default: all, in file order)")
    p.add_argument("--metrics-file", default="", metavar="FILE",
                   help="Prometheus textfile to write afterwards (default: metrics_file of "
                        "the config, if set)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Run the jobs; exit 0 if every job stored a complete snapshot (degraded included),
    3 if a job's snapshot is partial, else the first failed job's error code (10 for a
    missing repository, 11 locked, 12 wrong password, 1 for most others). As in Airflow, a
    job invalid on its own does not stop the others: it is named on stderr and, when it was
    to run, the exit status is 2 once the valid jobs have run (a named invalid job: 2 at
    once, nothing run)."""
    resolve_config_args(args)
    from airflow_backup.cli.context import cache_spec
    from airflow_backup.jobs.load import load_config_isolated
    from airflow_backup.jobs.runner import publish_metrics, run_job

    loaded = load_config_isolated(args.config)
    cfg = loaded.config
    for name in args.jobs:
        loaded.require(name)  # a named job that is invalid or unknown: nothing runs
    names = list(args.jobs) or list(cfg.jobs)
    for part, problems in loaded.broken.items():
        for problem in problems:
            out.warn(f"{args.config}: {problem}")
        if not args.jobs:
            out.warn(f"{args.config}: {part} is invalid and was not run")
    status = 0
    progress = make_progress(out.json_mode, out.quiet)
    cache = cache_spec(gopts)
    for name in names:
        result = run_job(cfg, name, events=progress, cache=cache)
        error = result.error
        if out.json_mode:
            out.json({"message_type": "job_result", **result.to_json(),
                      "error": error.describe() if error else "",
                      "error_type": error.error_type if error else "",
                      "exit_code": result.exit_code(),
                      "steps": {r.step: {"attempts": r.attempts, "duration": r.duration,
                                         **r.result} for r in result.steps}})
        elif result.ok:
            out.result(f"job {name}: {result.status.upper()}: snapshot(s) "
                       f"{', '.join(s[:8] for s in result.snapshots)} in {result.repository}, "
                       f"{human_size(result.bytes_added)} added, {result.duration:.1f}s, "
                       f"{result.attempts} attempt(s), {result.notified} notification(s)")
        else:
            out.result(f"job {name}: FAILED in {result.failed_step} after {result.attempts} "
                       f"attempt(s): {error.describe() if error else ''} "
                       f"({result.notified} notification(s))")
        for warning in result.warnings:
            out.warn(f"Warning: job {name}: {warning}")
        # The first job that did not fully succeed decides the exit status (3 partial, …).
        if result.exit_code() and not status:
            status = result.exit_code()
    publish_metrics(cfg, args.metrics_file, cache)
    if not args.jobs and any(part.startswith("jobs.") for part in loaded.broken):
        return status or EXIT_CONFIG
    return status
