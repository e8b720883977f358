"""``runbook``: write the Markdown recovery runbook of a config's jobs."""

from __future__ import annotations

import argparse
import os
from typing import Any

from airflow_backup.cli.commands.jobs_config_args import add_config_args, resolve_config_args
from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``runbook`` parser."""
    p = sub.add_parser("runbook", help="write a Markdown recovery runbook per job")
    add_config_args(p, "jobs to include (default: all)")
    p.add_argument("-O", "--output", default="", metavar="FILE",
                   help="write to FILE instead of standard output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Render the runbook."""
    resolve_config_args(args)
    from airflow_backup.jobs.load import load_config
    from airflow_backup.jobs.runbook import render_runbook

    cfg = load_config(args.config)
    text = render_runbook(cfg, args.config, list(args.jobs) or None)
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.output)
        out.result(f"runbook written to {args.output}")
    else:
        print(text, end="")
    return 0
