"""Allow ``python -m airflow_backup`` (the same as the ``airflow-backup`` command)."""

from airflow_backup.cli.start import entrypoint

entrypoint()
