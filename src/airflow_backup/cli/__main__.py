"""Allow ``python -m airflow_backup.cli``."""

from airflow_backup.cli.main import entrypoint

entrypoint()
