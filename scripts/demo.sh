#!/usr/bin/env bash
# airflow-backup demo: build a sample tree, back it up, list it, restore it, verify it; then
# run the backup job of examples/quickstart.yaml end to end: run, status, simulated loss,
# restore drill, restore --as-of, runbook.
#
#   scripts/demo.sh            (or: make demo)
#
# Environment:
#   AIRFLOW_BACKUP_DEMO_DIR   where everything goes (default: <repo>/demo, git-ignored)
#   AIRFLOW_BACKUP_PASSWORD   repository password (default: a fixed demo password)
#   AIRFLOW_BACKUP_BIN        the CLI to run (default: <repo>/.venv/bin/airflow-backup)
#
# The repository is created only once (DEMO_DIR/repo); each run makes a fresh sample
# tree (DEMO_DIR/source), adds a snapshot and restores into DEMO_DIR/restore-<timestamp>.
# Like restic, a restore recreates the absolute source path below the target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${AIRFLOW_BACKUP_BIN:-$ROOT/.venv/bin/airflow-backup}"
DEMO_DIR="${AIRFLOW_BACKUP_DEMO_DIR:-$ROOT/demo}"
mkdir -p "$DEMO_DIR"
DEMO_DIR="$(cd "$DEMO_DIR" && pwd)"
REPO="$DEMO_DIR/repo"
SOURCE="$DEMO_DIR/source"

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$BIN" ]; then
    echo "demo: $BIN not found; run 'make venv' first (or set AIRFLOW_BACKUP_BIN)" >&2
    exit 1
fi

if [ -z "${AIRFLOW_BACKUP_PASSWORD:-}" ]; then
    export AIRFLOW_BACKUP_PASSWORD="airflow-backup-demo-password"
    echo "demo: using the DEMO password '$AIRFLOW_BACKUP_PASSWORD' (AIRFLOW_BACKUP_PASSWORD" \
        "was not set). Never use it for real data."
else
    echo "demo: using the password from AIRFLOW_BACKUP_PASSWORD"
fi

step "Creating a sample tree in $SOURCE"
rm -rf "$SOURCE"
mkdir -p "$SOURCE/dags/nested/deeper" "$SOURCE/logs" "$SOURCE/data"
printf 'Demo tree for airflow-backup.\n' >"$SOURCE/README.txt"
printf 'from airflow import DAG\n# a pretend DAG file\n' >"$SOURCE/dags/example_dag.py"
printf 'deeply nested file\n' >"$SOURCE/dags/nested/deeper/notes.txt"
printf '[core]\ndags_folder = dags\n' >"$SOURCE/airflow.cfg"
for i in 1 2 3; do
    printf 'task %d ran at step %d\n' "$i" "$i" >"$SOURCE/logs/task-$i.log"
done
ln -s ../dags/example_dag.py "$SOURCE/logs/current-dag.py"
python3 - "$SOURCE/data/metadata.sqlite" <<'PY'
import sqlite3
import sys

con = sqlite3.connect(sys.argv[1])
with con:
    con.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, state TEXT)")
    con.executemany(
        "INSERT INTO dag_run (dag_id, state) VALUES (?, ?)",
        [(f"example_dag_{i % 7}", "success" if i % 5 else "failed") for i in range(500)],
    )
con.close()
PY
head -c $((5 * 1024 * 1024)) /dev/urandom >"$SOURCE/data/random-5MB.bin"
du -sh "$SOURCE"

if [ -f "$REPO/config" ]; then
    step "Repository $REPO already initialised"
else
    step "Initialising repository $REPO"
    "$BIN" -r "$REPO" init
fi

step "Backing up $SOURCE"
"$BIN" -r "$REPO" backup "$SOURCE" --tag demo

step "Snapshots"
"$BIN" -r "$REPO" snapshots

step "Files in the latest snapshot"
"$BIN" -r "$REPO" ls latest

TARGET="$DEMO_DIR/restore-$(date +%Y%m%d-%H%M%S)"
if [ -e "$TARGET" ]; then TARGET="$TARGET-$$"; fi
step "Restoring the latest snapshot into $TARGET"
"$BIN" -r "$REPO" restore latest --target "$TARGET"
RESTORED="$TARGET$SOURCE"

step "Verifying: diff -r $SOURCE $RESTORED"
diff -r --no-dereference "$SOURCE" "$RESTORED"
echo "demo: the restore is identical to the source"

if command -v restic >/dev/null 2>&1; then
    step "Checking the repository with restic ($(restic version | head -n1))"
    RESTIC_PASSWORD="$AIRFLOW_BACKUP_PASSWORD" restic -r "$REPO" --no-cache check --read-data
else
    step "restic is not installed: skipping 'restic check --read-data' (make tools installs it)"
fi

# ---- Backup jobs: examples/quickstart.yaml end to end ---------------------------------------
CONFIG="$ROOT/examples/quickstart.yaml"
export AIRFLOW_BACKUP_DEMO_DIR="$DEMO_DIR"
export DEMO_REPO_PASSWORD="$AIRFLOW_BACKUP_PASSWORD"
JOBDATA="$DEMO_DIR/data"
JOBREPO="$DEMO_DIR/jobs-repo"

step "Jobs: preparing the quickstart data in $JOBDATA (a SQLite database and DAG files)"
bash "$ROOT/scripts/quickstart_data.sh" "$BIN"

step "Jobs: validating $CONFIG"
"$BIN" config validate "$CONFIG"

step "Jobs: run (export -> validate -> store -> verify -> retention -> notify)"
"$BIN" run "$CONFIG"
sleep 1
BEFORE_LOSS="$(date '+%Y-%m-%d %H:%M:%S')"   # a moment after that backup, before the loss
sleep 1

step "Jobs: status (exit status is non-zero when the RPO is breached)"
"$BIN" status "$CONFIG"

step "Jobs: simulated loss: the DAG file is deleted and the database is emptied"
rm -f "$JOBDATA/dags/quickstart_dag.py"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM dag_run'); c.commit()" "$JOBDATA/airflow.db"
"$BIN" run "$CONFIG"   # a backup of the damaged state: the newest snapshot is now the bad one

step "Jobs: restore drill of the state before the loss (--as-of '$BEFORE_LOSS')"
"$BIN" drill "$CONFIG" --as-of "$BEFORE_LOSS"

RECOVER="$DEMO_DIR/recovered-$(date +%Y%m%d-%H%M%S)"
step "Jobs: restore --as-of '$BEFORE_LOSS' into $RECOVER"
"$BIN" -r "$JOBREPO" restore --tag job=quickstart --as-of "$BEFORE_LOSS" --target "$RECOVER"
ROWS="$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM dag_run').fetchone()[0])" "$RECOVER$JOBDATA/airflow.db")"
test -f "$RECOVER$JOBDATA/dags/quickstart_dag.py"
echo "demo: recovered the DAG file and $ROWS dag_run rows (the live database has 0)"
test "$ROWS" -gt 0

step "Jobs: status after the drill, and the runbook"
"$BIN" status "$CONFIG"
"$BIN" runbook "$CONFIG" --output "$DEMO_DIR/RUNBOOK.md"
echo "demo: metrics in $DEMO_DIR/metrics/airflow_backup.prom:"
grep -v '^#' "$DEMO_DIR/metrics/airflow_backup.prom" | sed 's/^/  /'

# ---- Airflow: the same job as generated DAGs -------------------------------------------------
AIRFLOW_CLI="${AIRFLOW_BACKUP_AIRFLOW:-$ROOT/.venv-airflow/bin/airflow}"
if [ -x "$AIRFLOW_CLI" ]; then
    export AIRFLOW_HOME="$DEMO_DIR/airflow-home"
    export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/examples/dags"
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    step "Airflow: the DAGs examples/dags/backups.py generates from $CONFIG (AIRFLOW_HOME=$AIRFLOW_HOME)"
    "$AIRFLOW_CLI" db migrate >"$DEMO_DIR/airflow-db-migrate.log" 2>&1 \
        || { tail -n 30 "$DEMO_DIR/airflow-db-migrate.log"; exit 1; }
    "$AIRFLOW_CLI" dags list --local -o plain 2>/dev/null | grep -E '__(quickstart|local)' 
    step "Airflow: airflow dags test backup__quickstart (export -> validate -> store -> verify -> notify -> retention)"
    LATEST_ID='import json,sys; print(max(json.load(sys.stdin), key=lambda s: s["time"])["id"][:8])'
    BEFORE="$("$BIN" -r "$JOBREPO" snapshots --tag job=quickstart --json | python3 -c "$LATEST_ID")"
    "$AIRFLOW_CLI" dags test backup__quickstart >"$DEMO_DIR/airflow-dags-test.log" 2>&1 \
        || { tail -n 40 "$DEMO_DIR/airflow-dags-test.log"; exit 1; }
    grep -E "DagRun Finished" "$DEMO_DIR/airflow-dags-test.log" | sed 's/^.*\(dag_id=[^,]*\).*\(state=[a-z]*\).*$/  \1 \2/'
    AFTER="$("$BIN" -r "$JOBREPO" snapshots --tag job=quickstart --json | python3 -c "$LATEST_ID")"
    test "$AFTER" != "$BEFORE"
    echo "demo: the Airflow run stored snapshot $AFTER of job quickstart (the latest before it: $BEFORE)"
    AIRFLOW_NOTE="  airflow:      dags test log in $DEMO_DIR/airflow-dags-test.log; 'make airflow' starts the UI"
else
    step "Airflow is not installed in .venv-airflow: skipping the DAG part (make airflow-venv)"
    AIRFLOW_NOTE="  airflow:      not installed (make airflow-venv)"
fi

step "Done"
cat <<EOF
  sample tree:  $SOURCE
  repository:   $REPO
  restored to:  $TARGET
  restored tree: $RESTORED
  password:     from AIRFLOW_BACKUP_PASSWORD
  jobs config:  $CONFIG (job "quickstart": run, status, simulated loss, drill, restore --as-of)
  job repo:     $JOBREPO
  recovered:    $RECOVER$JOBDATA
  runbook:      $DEMO_DIR/RUNBOOK.md
$AIRFLOW_NOTE
EOF
