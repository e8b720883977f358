"""Manual restore: trigger with ``{"as_of": "2026-03-01 00:00:00"}`` (or nothing, for the
latest snapshot) to restore the ``airflow-home`` job into /restore/airflow-home."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from airflow_backup.provider.operators.restore import RestoreOperator

with DAG(
    dag_id="example_restore",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1),
    params={"as_of": Param("", type="string", description="restore the state at this time")},
    tags=["airflow-backup"],
) as dag:
    RestoreOperator(
        task_id="restore",
        job="airflow-home",
        as_of="{{ params.as_of }}",
        target="/restore/airflow-home",
    )
