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

step "Jobs: validating $CONFIG"
"$BIN" config validate "$CONFIG"
if [ ! -f "$JOBREPO/config" ]; then
    step "Jobs: initialising the job repository $JOBREPO"
    "$BIN" -r "$JOBREPO" init
fi

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
EOF
