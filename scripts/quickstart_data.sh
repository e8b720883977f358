#!/usr/bin/env bash
# The data and repository of examples/quickstart.yaml: a SQLite database (200 dag_run rows)
# and a DAG file under $AIRFLOW_BACKUP_DEMO_DIR/data, and the job repository
# $AIRFLOW_BACKUP_DEMO_DIR/jobs-repo (created once, with the password in DEMO_REPO_PASSWORD).
#
#   scripts/quickstart_data.sh AIRFLOW_BACKUP_BIN
#
# Used by scripts/demo.sh (make demo) and scripts/airflow.sh (make airflow).
set -euo pipefail

BIN="$1"
: "${AIRFLOW_BACKUP_DEMO_DIR:?set AIRFLOW_BACKUP_DEMO_DIR}"
: "${DEMO_REPO_PASSWORD:?set DEMO_REPO_PASSWORD}"
JOBDATA="$AIRFLOW_BACKUP_DEMO_DIR/data"
JOBREPO="$AIRFLOW_BACKUP_DEMO_DIR/jobs-repo"

mkdir -p "$JOBDATA/dags"
python3 - "$JOBDATA/airflow.db" <<'PY'
import sqlite3
import sys

con = sqlite3.connect(sys.argv[1])
with con:
    con.execute("CREATE TABLE IF NOT EXISTS dag_run (id INTEGER PRIMARY KEY, dag_id TEXT)")
    con.executemany("INSERT INTO dag_run (dag_id) VALUES (?)", [(f"dag_{i % 5}",) for i in range(200)])
con.close()
PY
printf 'from airflow import DAG\n# quickstart DAG\n' >"$JOBDATA/dags/quickstart_dag.py"
if [ ! -f "$JOBREPO/config" ]; then
    echo "quickstart: initialising the job repository $JOBREPO"
    AIRFLOW_BACKUP_PASSWORD="$DEMO_REPO_PASSWORD" "$BIN" -r "$JOBREPO" init
fi
