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

echo
echo "== pgcluster watch: automatic failover (a watcher in the background, its log in /tmp/pgcluster-demo-watch.log)"
"$PGC" watch -f "$SPEC" 2>/tmp/pgcluster-demo-watch.log &
WATCH=$!
trap 'kill -TERM $WATCH 2>/dev/null; wait $WATCH 2>/dev/null || true' EXIT
sleep 1
DSN=$("$PGC" dsn --with-password -f "$SPEC")
# (env -u: Debian's psql wrapper reads PGCLUSTER as a cluster version of its own.)
reader() { env -u PGCLUSTER PGCONNECT_TIMEOUT=1 psql "$DSN" -X -At -c "SELECT 'primary: ' || current_setting('cluster_name') || ', ' || count(*) || ' row(s) in demo' FROM demo" 2>/dev/null || echo "no primary answers"; }
echo "reader: $(reader)"
echo "kill -9 the primary's postmaster (db_0), then the reader looks every 0.25 s; nobody types a command"
kill -9 "$(head -1 /tmp/pgcluster-demo/db_0/data/postmaster.pid)"
start=$(date +%s.%N)
last=""
for _ in $(seq 1 40); do
  seen=$(reader)
  if [ "$seen" != "$last" ]; then
    printf 'reader at +%.2f s: %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')" "$seen"
    last=$seen
  fi
  case "$seen" in *db_0*|"no primary answers") ;; *) break ;; esac
  sleep 0.25
done
sleep 4   # the watcher rejoins db_0 as a standby (rejoin: auto)
echo "== what the watcher logged"
sed 's/^/  | /' /tmp/pgcluster-demo-watch.log
kill -TERM $WATCH; wait $WATCH || true
trap - EXIT
echo "== pgcluster status -f $SPEC"
"$PGC" status -f "$SPEC" || true

cat <<MSG

Next, try:
  $PGC quorum -f $SPEC                  # commits wait for ANY 1 standby
  kill -9 \$(head -1 /tmp/pgcluster-demo/PRIMARY/data/postmaster.pid)   # the primary dies
  $PGC failover -f $SPEC                # by hand: promote the freshest standby, re-point the other
  $PGC rejoin NODE -f $SPEC             # the old primary comes back as a standby
  $PGC watch -f $SPEC                   # or let watch do both by itself (Ctrl-C stops it)
  $PGC drill --mode any -f $SPEC        # measure: acknowledged, lost, time to recover
  make demo-down                        # stop and remove the demo cluster
MSG
