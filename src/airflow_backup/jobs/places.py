"""Where a jobs config is found when none is named, as borgmatic finds its configuration:
``$AIRFLOW_BACKUP_CONFIG``, else ``$XDG_CONFIG_HOME/airflow-backup/jobs.yaml``
(``~/.config/…``), else ``/etc/airflow-backup/jobs.yaml``. Used by the CLI's jobs verbs and
by the Backups page in Airflow."""

from __future__ import annotations

import os

__all__ = ["config_places", "find_config"]


def config_places() -> list[str]:
    """Where a jobs config is looked for when none is named, in order."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return ["$AIRFLOW_BACKUP_CONFIG", os.path.join(xdg, "airflow-backup", "jobs.yaml"),
            "/etc/airflow-backup/jobs.yaml"]


def find_config() -> str | None:
    """Return the jobs config found in :func:`config_places`, or None."""
    if os.environ.get("AIRFLOW_BACKUP_CONFIG"):
        return os.environ["AIRFLOW_BACKUP_CONFIG"]
    return next((p for p in config_places()[1:] if os.path.isfile(p)), None)
