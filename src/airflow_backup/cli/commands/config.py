"""``config``: validate a jobs config file, print its JSON schema, or print a sample."""

from __future__ import annotations

import argparse
import json
from typing import Any

from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer

__all__ = ["register", "run", "sample_text"]


def register(sub: Any) -> None:
    """Add the ``config`` parser."""
    p = sub.add_parser("config", help="validate a jobs config file, print its schema or a "
                                      "sample")
    p.add_argument("action", choices=["validate", "schema", "sample"])
    p.add_argument("file", nargs="?", default="", help="the config file (for validate)")
    p.set_defaults(func=run)


def sample_text() -> str:
    """Return the packaged sample config (the same as examples/quickstart.yaml)."""
    from importlib import resources  # only this command needs it (start-up time)

    return resources.files("airflow_backup.jobs").joinpath("sample.yaml").read_text("utf-8")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Validate (exit 2 with one line per problem), or print schema / sample."""
    from airflow_backup.jobs.config import Config
    from airflow_backup.jobs.load import load_config

    if args.action == "schema":
        out.json(Config.model_json_schema()) if out.json_mode else \
            print(json.dumps(Config.model_json_schema(), indent=2))
        return 0
    if args.action == "sample":
        print(sample_text(), end="")
        return 0
    if not args.file:
        from airflow_backup.errors import ConfigError
        raise ConfigError("config validate needs the config file")
    cfg = load_config(args.file)
    if out.json_mode:
        out.json({"message_type": "config", "valid": True, "jobs": sorted(cfg.jobs),
                  "repositories": sorted(cfg.repositories)})
    else:
        out.result(f"{args.file}: valid: {len(cfg.jobs)} job(s) ({', '.join(cfg.jobs)}), "
                   f"{len(cfg.repositories)} repository(ies)")
    return 0
