#!/usr/bin/env bash
# Backups and restores of a pgbench database (issue 24): the throughput of a full and an
# incremental pgBackRest backup, of a restore from the repository into a new cluster, and
# of a pg_basebackup clone, against `cp -a` of the same data folder on this disk.
#
#   SCALE=130 (default) is a ~2 GB database; SCALE=20 is ~300 MB.
#
# What is measured (wall clock, figures printed, nothing asserted):
#   cp -a       the primary's data folder copied (then sync), the disk's own speed;
#   basebackup  pg_basebackup -X stream from the primary, as a new standby would be cloned;
#   full, incr  `pgcluster backup --type full`, then after 10,000 pgbench transactions
#               `--type incr` (each includes pgbackrest check and the archive wait);
#   restore     `pgcluster restore --to latest --into` a one-node cluster (restore, recovery,
#               promotion);
#   rejoin      after kill -9 of the primary, `failover` and 10,000 more transactions, the
#               old primary back with `rejoin` (pg_rewind), then the same with
#               `rejoin --reclone` (a whole new pg_basebackup): what rewinding saves.
#
# Usage: scripts/bench-backup.sh     (env: PGCLUSTER=.build/release/pgcluster, SCALE)
# Uses ports 22495-22497 and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

SCALE="${SCALE:-130}"
PORT0="${PORT0:-22495}"
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install pgbackrest)"
bench_setup

DIR="$BENCH_ROOT/cluster"
SPEC="$BENCH_ROOT/backup.yaml"
INTO="$BENCH_ROOT/restored.yaml"
require_ports_free "$PORT0" $((PORT0 + 1)) $((PORT0 + 2))
write_spec "$SPEC" bench_backup "$DIR" "{mode: async}" "$PORT0" $((PORT0 + 1))
sed -i "s|^nodes:|backup:\n  repo: $BENCH_ROOT/repo\nnodes:|" "$SPEC"
sed -i "s|^  bindir: .*|&\n  parameters:\n    max_wal_size: 2GB|" "$SPEC"
write_spec "$INTO" bench_restored "$BENCH_ROOT/restored" "{mode: async}" $((PORT0 + 2))
BENCH_SPECS+=("$SPEC" "$INTO")

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f MB/s", b / 1048576 / s; else print "-" }'; }
row() { printf '%-12s %9s s  %12s  %s\n' "$1" "$2" "$3" "$4"; }

say "bench-backup: pgbench scale $SCALE, 1+1 async, pgBackRest repository in $BENCH_ROOT/repo"
machine_line
say ""

"$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init failed"; }
DSN="$("$PGCLUSTER" dsn -f "$SPEC")"
SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
start="$(now)"
PGPASSWORD="$SU_PASS" "$PGBIN/pgbench" -i -q -s "$SCALE" "$DSN" >"$BENCH_ROOT/pgbench-init.log" 2>&1 || die "pgbench -i failed"
say "pgbench -i -s $SCALE: $(elapsed "$start") s"
PGPASSWORD="$SU_PASS" "$PGBIN/psql" -X -qAt "$DSN" -c "CHECKPOINT" >/dev/null
total="$(du -sb "$DIR/db_0/data" | cut -f1)"
# What a clone, a backup and a restore carry: the data folder without pg_wal.
bytes="$(du -sb --exclude=pg_wal "$DIR/db_0/data" | cut -f1)"
say "data folder: $((total / 1048576)) MB, of which $((bytes / 1048576)) MB outside pg_wal (the throughputs below are of this)"
say ""
printf '%-12s %11s  %12s  %s\n' STEP TIME THROUGHPUT NOTE

start="$(now)"
cp -a "$DIR/db_0/data" "$BENCH_ROOT/cp-copy" && sync
t="$(elapsed "$start")"; rm -rf "$BENCH_ROOT/cp-copy"
row "cp -a" "$t" "$(mbps "$total" "$t")" "the whole folder, pg_wal included: the disk's own speed"

mkdir -p "$BENCH_ROOT/basebackup"; give_to_pg "$BENCH_ROOT/basebackup"
start="$(now)"
as_pg env -C / HOME="$(getent passwd "$PG_OS_USER" | cut -d: -f6)" PGPASSFILE="$DIR/pgpass" "$PGBIN/pg_basebackup" -D "$BENCH_ROOT/basebackup/data" \
    -d "host=127.0.0.1 port=$PORT0 user=replicator sslmode=require" -X stream -c fast --no-password \
    >"$BENCH_ROOT/basebackup.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/basebackup.log" >&2; die "pg_basebackup failed"; }
t="$(elapsed "$start")"; rm -rf "$BENCH_ROOT/basebackup"
row "basebackup" "$t" "$(mbps "$bytes" "$t")" "a standby's clone"

start="$(now)"
"$PGCLUSTER" backup -f "$SPEC" --type full >"$BENCH_ROOT/full.out" 2>"$BENCH_ROOT/full.log" || { tail "$BENCH_ROOT/full.log" >&2; die "backup full failed"; }
t="$(elapsed "$start")"
row "backup full" "$t" "$(mbps "$bytes" "$t")" "$(sed 's/.*: //' "$BENCH_ROOT/full.out")"

PGPASSWORD="$SU_PASS" "$PGBIN/pgbench" -n -c 4 -t 2500 "$DSN" >"$BENCH_ROOT/pgbench-run.log" 2>&1 || die "pgbench run failed"
start="$(now)"
"$PGCLUSTER" backup -f "$SPEC" --type incr >"$BENCH_ROOT/incr.out" 2>"$BENCH_ROOT/incr.log" || { tail "$BENCH_ROOT/incr.log" >&2; die "backup incr failed"; }
t="$(elapsed "$start")"
row "backup incr" "$t" "-" "after 10,000 pgbench transactions: $(sed 's/.*: //' "$BENCH_ROOT/incr.out")"

start="$(now)"
"$PGCLUSTER" restore -f "$SPEC" --to latest --into "$INTO" >"$BENCH_ROOT/restore.out" 2>"$BENCH_ROOT/restore.log" || { tail "$BENCH_ROOT/restore.log" >&2; die "restore failed"; }
t="$(elapsed "$start")"
row "restore" "$t" "$(mbps "$bytes" "$t")" "into a new one-node cluster, recovered and promoted"

# After a failover, the old primary back as a standby: pg_rewind (what `rejoin` does) against
# a new clone (`rejoin --reclone`), after the same pgbench writes on the new primary.
rejoin_after_failover() {
    local how="$1" old
    old="db_0"
    [ "$(PGPASSWORD="$SU_PASS" "$PGBIN/psql" -X -qAt "$DSN" -c "SELECT inet_server_port()")" = "$PORT0" ] || old="db_1"
    kill -9 "$(head -n1 "$DIR/$old/data/postmaster.pid")"
    "$PGCLUSTER" failover -f "$SPEC" >"$BENCH_ROOT/failover-$how.log" 2>&1 || { tail "$BENCH_ROOT/failover-$how.log" >&2; die "failover failed"; }
    PGPASSWORD="$SU_PASS" "$PGBIN/pgbench" -n -c 4 -t 2500 "$DSN" >>"$BENCH_ROOT/pgbench-run.log" 2>&1 || die "pgbench run failed"
    start="$(now)"
    # shellcheck disable=SC2046
    "$PGCLUSTER" rejoin "$old" $([ "$how" = reclone ] && echo --reclone) -f "$SPEC" >"$BENCH_ROOT/rejoin-$how.log" 2>&1 ||
        { tail "$BENCH_ROOT/rejoin-$how.log" >&2; die "rejoin ($how) failed"; }
    t="$(elapsed "$start")"
}
rejoin_after_failover rewind
row "rejoin" "$t" "-" "pg_rewind of the old primary after a failover and 10,000 transactions"
rewound="$t"
rejoin_after_failover reclone
row "rejoin clone" "$t" "$(mbps "$bytes" "$t")" "rejoin --reclone: pg_basebackup of the whole folder instead"
say ""
say "rewind / reclone: $(ratio "$rewound" "$t")"
