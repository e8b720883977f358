"""Allow ``python -m airflow_backup.cli``."""

from airflow_backup.cli.start import entrypoint

entrypoint()
