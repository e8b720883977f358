"""airflow-backup: encrypted, deduplicated backups in restic's repository format."""

__version__ = "0.1.0"
