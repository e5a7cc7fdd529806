#!/usr/bin/env bash
# The demo `make demo` runs: a primary and two streaming standbys on this machine,
# a row written on the primary and read back from each standby, and the status.
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=${1:-examples/local.yaml}
PGC=${PGCLUSTER:-.build/release/pgcluster}

if "$PGC" status -f "$SPEC" >/dev/null 2>&1 || [ -f /tmp/pgcluster-demo/credentials.json ]; then
  echo "== an earlier demo cluster exists: destroying it first"
  "$PGC" destroy --yes -f "$SPEC"
fi

echo "== pgcluster init -f $SPEC"
"$PGC" init -f "$SPEC"

echo
echo "== a row written on the primary (db_0)"
"$PGC" psql db_0 -f "$SPEC" -- -X -q -c "CREATE TABLE demo (id int PRIMARY KEY, note text, at timestamptz DEFAULT now())" \
  -c "INSERT INTO demo (id, note) VALUES (1, 'hello from the primary')" -c "TABLE demo"

for standby in db_1 db_2; do
  echo "== read back on $standby (a hot standby)"
  for _ in $(seq 1 100); do
    out=$("$PGC" psql "$standby" -f "$SPEC" -- -X -At -c "SELECT note FROM demo WHERE id = 1" 2>/dev/null || true)
    [ -n "$out" ] && break
    sleep 0.05
  done
  "$PGC" psql "$standby" -f "$SPEC" -- -X -c "SELECT id, note, pg_is_in_recovery() AS on_standby FROM demo"
done

echo "== pgcluster status -f $SPEC"
"$PGC" status -f "$SPEC"

cat <<MSG

Next, try:
  $PGC quorum -f $SPEC                  # commits wait for ANY 1 standby
  kill -9 \$(head -1 /tmp/pgcluster-demo/db_0/data/postmaster.pid)   # the primary dies
  $PGC failover -f $SPEC                # promote the freshest standby, re-point the other
  $PGC rejoin db_0 -f $SPEC             # the old primary comes back as a standby
  $PGC drill --mode any -f $SPEC        # measure: acknowledged, lost, time to recover
  make demo-down                        # stop and remove the demo cluster
MSG
