"""``config``: validate a jobs config file, print its JSON schema, or print a sample."""

from __future__ import annotations

import argparse
import json
from typing import Any

from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer

__all__ = ["make_demo_data", "register", "run", "sample_text"]


def register(sub: Any) -> None:
    """Add the ``config`` parser."""
    p = sub.add_parser("config", help="validate a jobs config file, print its schema or a "
                                      "sample")
    p.add_argument("action", choices=["validate", "schema", "sample"])
    p.add_argument("file", nargs="?", default="", help="the config file (for validate)")
    p.add_argument("--demo-data", action="store_true",
                   help="sample: also create the small data set it backs up (an SQLite "
                        "database and a DAG file below $AIRFLOW_BACKUP_DEMO_DIR, default "
                        "./demo), so that it runs as printed")
    p.set_defaults(func=run)


def make_demo_data(env: dict[str, str] | None = None) -> str:
    """Create what the sample job backs up, if absent: ``DIR/data/airflow.db`` (SQLite) and
    ``DIR/data/dags/example_dag.py``; return DIR (``$AIRFLOW_BACKUP_DEMO_DIR`` or ./demo)."""
    import os
    import sqlite3

    base = (env if env is not None else dict(os.environ)).get("AIRFLOW_BACKUP_DEMO_DIR",
                                                              "./demo")
    dags = os.path.join(base, "data", "dags")
    os.makedirs(dags, exist_ok=True)
    database = os.path.join(base, "data", "airflow.db")
    if not os.path.exists(database):
        with sqlite3.connect(database) as conn:
            conn.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, "
                         "state TEXT)")
            conn.executemany("INSERT INTO dag_run (dag_id, state) VALUES (?, ?)",
                             [(f"example_{i % 3}", "success") for i in range(100)])
        conn.close()
    dag = os.path.join(dags, "example_dag.py")
    if not os.path.exists(dag):
        with open(dag, "w", encoding="utf-8") as f:
            f.write('"""A DAG file for the airflow-backup sample to back up."""\n')
    return base


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
        if args.demo_data:
            import sys

            print(f"demo data in {make_demo_data()}/data", file=sys.stderr)
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
