"""The jobs-config argument of ``run``, ``status``, ``drill`` and ``runbook``, found as
borgmatic finds its configuration: ``-c FILE``, else a first argument that is a file (or
ends in .yaml/.yml/.json), else ``$AIRFLOW_BACKUP_CONFIG``, else
``$XDG_CONFIG_HOME/airflow-backup/jobs.yaml`` (``~/.config/…``), else
``/etc/airflow-backup/jobs.yaml``. The remaining arguments name jobs."""

from __future__ import annotations

import argparse
import os

from airflow_backup.errors import ConfigError
from airflow_backup.jobs.places import config_places, find_config

__all__ = ["add_config_args", "config_places", "resolve_config_args"]


def add_config_args(parser: argparse.ArgumentParser, jobs_help: str) -> None:
    """Add ``-c/--config FILE`` and the positional ``[CONFIG] [JOB…]``."""
    parser.add_argument("-c", "--config", dest="config_option", default="", metavar="FILE",
                        help="the jobs config file (YAML); default: a first argument that "
                             "is a file, else the first of " + ", ".join(config_places()))
    parser.add_argument("words", nargs="*", metavar="[CONFIG] JOB",
                        help=f"the config file unless -c is given, then {jobs_help}")


def resolve_config_args(args: argparse.Namespace) -> None:
    """Set ``args.config`` and ``args.jobs`` from ``-c`` and the positional words. Raise
    ConfigError naming the places looked in if no config file is found."""
    words = list(args.words)
    if args.config_option:
        args.config, args.jobs = args.config_option, words
        return
    if words and (os.path.isfile(words[0])
                  or words[0].endswith((".yaml", ".yml", ".json"))):
        args.config, args.jobs = words[0], words[1:]
        return
    args.jobs = words
    found = find_config()
    if found is not None:
        args.config = found
        return
    raise ConfigError("no jobs config file: name it (airflow-backup run jobs.yaml, or -c "
                      f"FILE), or put it in one of {', '.join(config_places())}")
