"""``init``: create a new repository."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_backup.cli.context import (
    GlobalOptions,
    new_password,
    repository_spec,
)
from airflow_backup.cli.output import Printer
from airflow_backup.repository.repo import Repository


def register(sub: Any) -> None:
    """Add the ``init`` parser."""
    p = sub.add_parser("init", help="create a new repository")
    p.add_argument("--repository-version", type=int, default=2, choices=(1, 2),
                   help="repository format version (default 2: compressed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Create the repository with the password from the usual sources."""
    storage = repository_spec(gopts).open_storage()
    password = new_password(gopts.password_file, gopts, init=True)
    repo = Repository.init(storage, password, version=args.repository_version)
    if out.json_mode:
        out.json({"message_type": "initialized", "id": repo.config.id,
                  "repository": storage.location})
    else:
        out.result(f"created repository {repo.config.id[:10]} at {storage.location}")
        out.line("Please note that knowledge of your password is required to access the "
                 "repository. Losing your password means that your data is irrecoverably lost.")
    return 0
