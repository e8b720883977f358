"""Notifications of the airflow-backup provider."""
