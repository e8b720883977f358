"""Restore drill, run whenever the ``airflow-home`` backup job emits its Asset event: restore
the newest snapshot into a temporary directory, compare every file with the snapshot's
records and report the recovery time (XCom ``rto_seconds``)."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_backup.provider.assets import backup_asset
from airflow_backup.provider.notifications.apprise import BackupNotifier
from airflow_backup.provider.operators.restore import RestoreDrillOperator

with DAG(
    dag_id="example_restore_drill",
    schedule=[backup_asset("airflow-home")],
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    tags=["airflow-backup"],
) as dag:
    RestoreDrillOperator(
        task_id="drill",
        job="airflow-home",
        on_failure_callback=BackupNotifier(apprise_conn_id="apprise_default"),
    )
