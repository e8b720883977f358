"""Sensors of the airflow-backup provider."""
