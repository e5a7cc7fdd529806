#!/usr/bin/env bash
# How long `pgcluster failover` takes to give back a working cluster after the primary dies.
#
# What is measured: a primary and 2 standbys with quorum commit ANY 1 (every commit is on
# at least one standby). Each run kills the current primary's postmaster with kill -9 (PID
# from the first line of its postmaster.pid: a crash, no clean shutdown), then times, from
# the moment `pgcluster failover --json` is started:
#   cmd     until the command exits;
#   write   until the new primary accepts a write: an INSERT by psql as the superuser
#           (password from local.dir/credentials.json), retried until it commits. With
#           ANY 1 the commit returns only once the remaining standby has acknowledged it,
#           so a quorum that is not back makes this wait;
#   total   until, in addition, pg_stat_replication on the new primary shows the remaining
#           standby streaming (1 row: the old primary is dead).
# Between runs the dead primary comes back as a standby with `pgcluster rejoin OLD`
# (pg_rewind), which is what an operator does; it is timed and shown, not counted. The
# next run then kills whichever node is primary now, so every node takes its turn.
#
# Why it is fair: the clock starts when the operator would start the command, and stops at
# a state checked from outside pgcluster (a committed write, a streaming standby), not at
# pgcluster's own idea of being done; the psql round trips this costs are included in the
# totals (a few ms each). Detection time (noticing that the primary is dead) is not part
# of it: pgcluster failover is run by a person or a monitor after detection. The per-step
# timings come from the failover's own JSON report (steps[].seconds, totalSeconds).
#
# Usage: scripts/bench-failover.sh     (env: RUNS=5, PGCLUSTER=.build/release/pgcluster)
# Uses ports 22050-22052 and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

RUNS="${RUNS:-5}"
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
PORT0=22050
NODES=3

bench_setup

DIR="$BENCH_ROOT/cluster"
SPEC="$BENCH_ROOT/failover.yaml"
# shellcheck disable=SC2046
require_ports_free $(seq "$PORT0" $((PORT0 + NODES - 1)))
# shellcheck disable=SC2046
write_spec "$SPEC" bench_failover "$DIR" "{mode: any, count: 1}" $(seq "$PORT0" $((PORT0 + NODES - 1)))
BENCH_SPECS+=("$SPEC")

# node_port, sql and streaming_count come from bench-common.sh.

# wait_streaming NODE COUNT SECONDS: polls every 10 ms.
wait_streaming() {
    local deadline
    deadline="$(awk -v t="$(now)" -v s="$3" 'BEGIN { printf "%.3f", t + s }')"
    until [ "$(streaming_count "$1")" -eq "$2" ]; do
        awk -v t="$(now)" -v d="$deadline" 'BEGIN { exit !(t > d) }' && return 1
        sleep 0.01
    done
}

say "bench-failover: kill -9 the primary, time pgcluster failover until a write commits and the standby streams"
machine_line
say "cluster: 1 primary + 2 standbys, synchronous ANY 1, $RUNS runs"
say ""

start="$(now)"
"$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init failed"; }
say "pgcluster init: $(elapsed "$start") s (not counted)"
SU_USER="$(json_login "$DIR/credentials.json" superuser user)"
SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
primary=db_0
sql "$primary" "CREATE TABLE bench_failover (id bigserial PRIMARY KEY, run int, at timestamptz DEFAULT now())" >/dev/null

TOTALS=() CMDS=() REPORTED=()
for run in $(seq 1 "$RUNS"); do
    say ""
    # A healthy cluster to start from: both standbys stream from the primary.
    wait_streaming "$primary" 2 30 || die "run $run: the standbys do not stream from $primary before the kill"

    data="$DIR/$primary/data"
    pid="$(head -n1 "$data/postmaster.pid")"
    kill -9 "$pid"
    report="$BENCH_ROOT/failover-$run.json"

    t0="$(now)"
    if ! "$PGCLUSTER" failover --json -f "$SPEC" >"$report" 2>"$BENCH_ROOT/failover-$run.err"; then
        sed 's/^/  | /' "$report" "$BENCH_ROOT/failover-$run.err" >&2
        die "run $run: pgcluster failover failed"
    fi
    t_cmd="$(elapsed "$t0")"
    new="$(json_field "$report" candidate)"
    if [ -z "$new" ] || [ "$new" = "$primary" ]; then die "run $run: no new primary in the report ($report)"; fi

    # The first write that commits on the new primary (retried: it may not accept one yet).
    tries=0
    until sql "$new" "INSERT INTO bench_failover (run) VALUES ($run)" >/dev/null 2>&1; do
        tries=$((tries + 1))
        awk -v t="$(now)" -v t0="$t0" 'BEGIN { exit !(t - t0 > 60) }' && die "run $run: $new accepts no write after 60 s"
        sleep 0.01
    done
    t_write="$(elapsed "$t0")"
    wait_streaming "$new" 1 30 || die "run $run: the remaining standby does not stream from $new"
    total="$(elapsed "$t0")"

    reported="$(json_field "$report" totalSeconds)"
    TOTALS+=("$total") CMDS+=("$t_cmd") REPORTED+=("$(awk -v s="$reported" 'BEGIN { printf "%.3f", s }')")
    printf 'run %d/%d: %s killed (pid %s), %s promoted: total %s s (command %s s, write ok at %s s; retries %d)\n' \
        "$run" "$RUNS" "$primary" "$pid" "$new" "$total" "$t_cmd" "$t_write" "$tries"
    printf '  pgcluster report: totalSeconds %.3f\n' "$reported"
    json_steps "$report" | while IFS=$'\t' read -r seconds name; do
        printf '    %8s s  %s\n' "$seconds" "$name"
    done
    warnings="$(grep -c '^    "' <(sed -n '/^  "warnings" : \[/,/^  \]/p' "$report") || true)"
    [ "$warnings" -eq 0 ] || say "  warnings: $(sed -n '/^  "warnings" : \[/,/^  \]/p' "$report" | sed -n 's/^    "\(.*\)",\{0,1\}$/\1/p' | paste -sd';' -)"

    # Bring the old primary back as a standby of the new one (not counted).
    start="$(now)"
    rejoin="$BENCH_ROOT/rejoin-$run.json"
    if ! "$PGCLUSTER" rejoin "$primary" --json -f "$SPEC" >"$rejoin" 2>"$BENCH_ROOT/rejoin-$run.err"; then
        sed 's/^/  | /' "$rejoin" "$BENCH_ROOT/rejoin-$run.err" >&2
        die "run $run: pgcluster rejoin $primary failed"
    fi
    say "  then: pgcluster rejoin $primary ($(json_field "$rejoin" method)): $(elapsed "$start") s, not counted"
    json_steps "$rejoin" | awk -F'\t' '{ printf("%s%s %s s", (NR > 1 ? "; " : "    rejoin steps: "), $2, $1) } END { print "" }'
    primary="$new"
done

say ""
printf '%-34s %8s %8s %8s\n' "" median min max
printf '%-34s %8s %8s %8s\n' "total (until write + streaming)" "$(median "${TOTALS[@]}")" "$(minimum "${TOTALS[@]}")" "$(maximum "${TOTALS[@]}")"
printf '%-34s %8s %8s %8s\n' "pgcluster failover command" "$(median "${CMDS[@]}")" "$(minimum "${CMDS[@]}")" "$(maximum "${CMDS[@]}")"
printf '%-34s %8s %8s %8s\n' "report totalSeconds" "$(median "${REPORTED[@]}")" "$(minimum "${REPORTED[@]}")" "$(maximum "${REPORTED[@]}")"
say ""
say "bench-failover runs=$RUNS median=$(median "${TOTALS[@]}") min=$(minimum "${TOTALS[@]}") max=$(maximum "${TOTALS[@]}")"
