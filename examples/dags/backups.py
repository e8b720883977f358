"""The DAGs of examples/quickstart.yaml: one file turns a jobs config into Airflow DAGs.

For each job: ``backup__<job>`` (export → validate → store → verify → notify → retention, on
the job's cron schedule, retries and alerts from the job) and ``drill__<job>``; for each
repository: ``maintenance__<repository>`` (check, prune). See docs/airflow.md.

Copy this file into your DAGs folder next to your own config (a relative path is read from
this file's folder); set the environment the config refers to (here AIRFLOW_BACKUP_DEMO_DIR
and DEMO_REPO_PASSWORD) for the DAG processor and the workers.
"""

from airflow_backup.provider.dags import backup_dags

globals().update(backup_dags("../quickstart.yaml"))
