"""``init``: create a new repository."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.context import (
    GlobalOptions,
    new_password,
    remember,
    repository_spec,
)
from airflow_backup.cli.output import Printer
from airflow_backup.repository.repo import Repository


def register(sub: Any) -> None:
    """Add the ``init`` parser."""
    p = sub.add_parser("init", help="create a new repository")
    p.add_argument("--repository-version", type=int, default=2, choices=(1, 2),
                   help="repository format version (default 2: compressed)")
    p.add_argument("--config", default="", metavar="FILE",
                   help="create every repository this jobs config names (each with its "
                        "own password reference); those that exist are checked and kept")
    p.set_defaults(func=run)


def _from_config(args: argparse.Namespace, out: Printer) -> int:
    from airflow_backup.jobs.load import load_config
    from airflow_backup.jobs.repos import repository_spec as job_repository_spec
    from airflow_backup.operations.spec import init_repository

    config = load_config(args.config)
    for name in config.repositories:
        spec = job_repository_spec(config, name, with_fallbacks=False, primary=False)
        created, repo_id = init_repository(spec, args.repository_version)
        if out.json_mode:
            out.json({"message_type": "initialized" if created else "exists",
                      "name": name, "id": repo_id, "repository": spec.location})
        elif created:
            out.result(f"created repository {name} ({repo_id[:10]}) at {spec.location}")
        else:
            out.result(f"repository {name} ({repo_id[:10]}) at {spec.location} exists: kept")
    return 0


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Create the repository with the password from the usual sources (or, with --config,
    every repository of a jobs config)."""
    if args.config:
        return _from_config(args, out)
    spec = repository_spec(gopts)
    storage = spec.open_storage()
    password = new_password(gopts.password_file, gopts, init=True)
    repo = Repository.init(storage, password, version=args.repository_version)
    # The first command after init (usually the first backup) then derives the key while
    # it starts up, as every later one does (cli/start.py); a remote repository only.
    remember(gopts, spec, repo)
    if out.json_mode:
        out.json({"message_type": "initialized", "id": repo.config.id,
                  "repository": storage.location})
    else:
        out.result(f"created repository {repo.config.id[:10]} at {storage.location}")
        out.line("Please note that knowledge of your password is required to access the "
                 "repository. Losing your password means that your data is irrecoverably lost.")
    return 0
