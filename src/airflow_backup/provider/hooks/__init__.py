"""Hooks of the airflow-backup provider."""
