"""``version``: the program's version, the Python it runs on, and the platform, as restic's
``version`` prints them (``--json`` too)."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

from airflow_backup import __version__
from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``version`` parser."""
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=run)


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Print ``airflow-backup X.Y.Z compiled with Python 3.N on linux/amd64``."""
    python = platform.python_version()
    if out.json_mode:
        out.json({"message_type": "version", "version": __version__,
                  "python_version": python, "go_os": sys.platform, "go_arch": _arch()})
    else:
        out.result(f"airflow-backup {__version__} compiled with Python {python} on "
                   f"{sys.platform}/{_arch()}")
    return 0
