"""Triggers of the airflow-backup provider."""
