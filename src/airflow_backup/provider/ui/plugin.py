"""The Airflow plugin of the Backups page, registered through the ``airflow.plugins`` entry
point: the FastAPI app at ``/backups`` and a "Backups" entry in the navigation that shows
it inside the UI (``/plugin/backups``)."""

from __future__ import annotations

import sys
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_backup.provider.ui.app import DEPLOYMENT, app

__all__ = ["BackupsPlugin"]


class BackupsPlugin(AirflowPlugin):
    """The Backups page."""

    # Airflow declares these as plain (mutable) class attributes; a ClassVar would clash.
    name = "airflow_backup"
    fastapi_apps = [  # noqa: RUF012
        {"app": app, "url_prefix": "/backups", "name": "airflow-backup Backups"}]
    external_views = [  # noqa: RUF012
        {"name": "Backups", "href": "backups/", "destination": "nav", "url_route": "backups",
         "icon": "backups/static/icon.svg"}]

    @classmethod
    def on_load(cls, *args: Any, **kwargs: Any) -> None:
        """In the api-server (every Airflow process loads plugins), read the jobs'
        repositories in the background so that the first page view is served warm."""
        if sys.argv[1:2] == ["api-server"]:
            threading.Thread(target=DEPLOYMENT.warm, name="airflow-backup-warm",
                             daemon=True).start()
