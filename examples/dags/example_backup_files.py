"""Nightly backup of a directory: back up → verify → retention, alerts through Apprise.

Needs the connections ``backup_repository_default`` (type ``backup_repository``: host = the
repository URL, password = the repository password) and ``apprise_default`` (extra
``{"urls": ["slack://…", "mailto://…"]}``); see docs/airflow.md.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_backup.provider.notifications.apprise import BackupNotifier
from airflow_backup.provider.operators.backup import BackupOperator
from airflow_backup.provider.operators.maintenance import (
    ForgetPruneOperator,
    VerifyBackupOperator,
)

alert = BackupNotifier(apprise_conn_id="apprise_default")

with DAG(
    dag_id="example_backup_files",
    schedule="0 2 * * *",
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "retries": 3,
        "retry_delay": datetime.timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": datetime.timedelta(minutes=30),
    },
    tags=["airflow-backup"],
) as dag:
    backup = BackupOperator(
        task_id="backup",
        job="airflow-home",
        paths=["/opt/airflow/dags", "/opt/airflow/config"],
        excludes=["__pycache__", "*.pyc"],
        tags=["nightly"],
        on_failure_callback=alert,
    )
    verify = VerifyBackupOperator(task_id="verify", read_data_subset="5%",
                                  on_failure_callback=alert)
    retention = ForgetPruneOperator(task_id="retention", job="airflow-home",
                                    keep_daily=7, keep_weekly=4, keep_monthly=12)
    backup >> verify >> retention
