#!/usr/bin/env bash
# make airflow: `airflow standalone` (scheduler, DAG processor, triggerer, API server and UI on
# an SQLite metadata DB) with the DAGs of examples/dags/ — among them the DAGs that
# examples/dags/backups.py generates from examples/quickstart.yaml — on the embedded default
# (a local repository, SQLite, files under ./demo). Prints where the UI is and how to log in;
# Ctrl-C stops everything.
#
# Environment:
#   AIRFLOW_BACKUP_DEMO_DIR   data, repository and AIRFLOW_HOME (default: <repo>/demo)
#   DEMO_REPO_PASSWORD        the quickstart repository password (default: a demo password)
#   AIRFLOW_PORT              the API server / UI port (default: 8080)
#   AIRFLOW_SMOKE=1           exit once the UI answers and the DAGs are listed (used by tests)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AIRFLOW_CLI="$ROOT/.venv-airflow/bin/airflow"
BIN="$ROOT/.venv-airflow/bin/airflow-backup"
if [ ! -x "$AIRFLOW_CLI" ] || [ ! -x "$BIN" ]; then
    echo "airflow: $AIRFLOW_CLI not found; run 'make airflow-venv' first" >&2
    exit 1
fi
DEMO_DIR="${AIRFLOW_BACKUP_DEMO_DIR:-$ROOT/demo}"
mkdir -p "$DEMO_DIR"
export AIRFLOW_BACKUP_DEMO_DIR="$(cd "$DEMO_DIR" && pwd)"
export DEMO_REPO_PASSWORD="${DEMO_REPO_PASSWORD:-airflow-backup-demo-password}"
PORT="${AIRFLOW_PORT:-8080}"

# standalone starts its components as `airflow …` from PATH.
export PATH="$ROOT/.venv-airflow/bin:$PATH"
export AIRFLOW_HOME="$AIRFLOW_BACKUP_DEMO_DIR/airflow-standalone"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/examples/dags"
# The Backups page (the provider's plugin) shows the jobs of this config.
export AIRFLOW__AIRFLOW_BACKUP__JOBS_CONFIG="$ROOT/examples/quickstart.yaml"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
mkdir -p "$AIRFLOW_HOME"

bash "$ROOT/scripts/quickstart_data.sh" "$BIN"

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "airflow: port $PORT is in use; set AIRFLOW_PORT" >&2
    exit 1
fi

LOG="$AIRFLOW_HOME/standalone.log"
echo "airflow: starting 'airflow standalone' (AIRFLOW_HOME=$AIRFLOW_HOME, log: $LOG)"
set -m  # the background job gets its own process group: stopping it stops every component
"$AIRFLOW_CLI" standalone >"$LOG" 2>&1 &
PID=$!
set +m
stop() {
    kill -INT -- "-$PID" 2>/dev/null || return 0
    for _ in $(seq 1 30); do kill -0 -- "-$PID" 2>/dev/null || return 0; sleep 1; done
    kill -KILL -- "-$PID" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

BASE="http://127.0.0.1:$PORT"
PASSFILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
for _ in $(seq 1 180); do
    if ! kill -0 "$PID" 2>/dev/null; then
        tail -n 40 "$LOG" >&2
        echo "airflow: 'airflow standalone' exited early (log: $LOG)" >&2
        exit 1
    fi
    if [ -s "$PASSFILE" ] && curl -sf "$BASE/api/v2/monitor/health" >/dev/null 2>&1; then
        break
    fi
    sleep 1
done
curl -sf "$BASE/api/v2/monitor/health" >/dev/null || { echo "airflow: the UI did not come up in 180 s (log: $LOG)" >&2; exit 1; }
ADMIN_PASSWORD="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$PASSFILE")"

# Log in through the REST API and wait until the DAG processor has listed the generated DAGs.
TOKEN="$(curl -sf -X POST "$BASE/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\": \"admin\", \"password\": \"$ADMIN_PASSWORD\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
DAGS=""
has_generated_dags() {
    for d in backup__quickstart drill__quickstart maintenance__local; do
        case " $DAGS " in *" $d "*) ;; *) return 1 ;; esac
    done
}
for _ in $(seq 1 120); do
    DAGS="$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/api/v2/dags?limit=100" \
        | python3 -c 'import json,sys; print(" ".join(sorted(d["dag_id"] for d in json.load(sys.stdin)["dags"])))')"
    has_generated_dags && break
    sleep 1
done
PAGE_JOBS="$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/backups/api/jobs" \
    | python3 -c 'import json,sys; print(" ".join(j["job"] for j in json.load(sys.stdin)["jobs"]))')"
case " $PAGE_JOBS " in *" quickstart "*) ;; *) echo "airflow: the Backups page lists no quickstart job (log: $LOG)" >&2; exit 1 ;; esac
ERRORS="$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/api/v2/importErrors" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_entries"])')"

cat <<MSG

  Airflow is running: http://localhost:$PORT
  Log in as:          admin / $ADMIN_PASSWORD   (generated; also in $PASSFILE)
  DAGs:               $DAGS
  Backups page:       http://localhost:$PORT/plugin/backups   (jobs: $PAGE_JOBS)
  Import errors:      $ERRORS
  Try:                unpause and trigger backup__quickstart; its Asset event runs
                      drill__quickstart. Snapshots: AIRFLOW_BACKUP_PASSWORD=\$DEMO_REPO_PASSWORD
                      $ROOT/.venv/bin/airflow-backup -r $AIRFLOW_BACKUP_DEMO_DIR/jobs-repo snapshots
  Logs:               $LOG
  Stop:               Ctrl-C

MSG
has_generated_dags || { echo "airflow: the generated DAGs did not appear (log: $LOG)" >&2; exit 1; }
test "$ERRORS" = 0
if [ "${AIRFLOW_SMOKE:-}" = 1 ]; then
    exit 0
fi
wait "$PID"
