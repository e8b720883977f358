"""Operators of the airflow-backup provider."""
