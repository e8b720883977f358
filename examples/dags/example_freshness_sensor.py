"""Wait (in the triggerer, without holding a worker slot) until the nightly backup of the
``airflow-home`` job is at most 26 hours old, then run the downstream work."""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_backup.provider.sensors.freshness import BackupFreshnessSensor

with DAG(
    dag_id="example_freshness_sensor",
    schedule="0 6 * * *",
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    tags=["airflow-backup"],
) as dag:
    fresh = BackupFreshnessSensor(
        task_id="backup_is_fresh",
        job="airflow-home",
        max_age=datetime.timedelta(hours=26),
        deferrable=True,
        poke_interval=300,
        timeout=4 * 3600,
    )
    fresh >> EmptyOperator(task_id="risky_maintenance")
