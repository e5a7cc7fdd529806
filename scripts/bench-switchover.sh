#!/usr/bin/env bash
# How long a planned switchover takes, and how long writers wait through it.
#
# What is measured: a primary and 2 standbys with quorum commit ANY 1 and TLS on. Each run
# starts 4 writers through the read-write DSN (`pgcluster dsn`; one psql per statement, as
# in bench-watch.sh) and a fifth that holds its session (a pool's connection; it
# reconnects through the same DSN when the session breaks). After 2 s of writes,
# `pgcluster switchover` moves the primary to the next node; RUNS runs, round the nodes.
#   command   the switchover command from start to exit (the writer-visible part is less:
#             writes stop at the freeze and resume at the promotion);
#   gap       the longest pause between two acknowledged writes, all writers together,
#             from 1 s before the command to 1 s after it: what an application sees;
#   lost      acknowledged ids missing on the new primary afterwards (must be 0).
# The command's own steps (its --json report) are printed per run.
#
# Usage: scripts/bench-switchover.sh     (env: RUNS=5, PGCLUSTER=.build/release/pgcluster)
# Uses ports 22075-22077 and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

runs_or 5
PORT0=22075
NODES=3
CLIENTS=4

bench_setup
trap 'st=$?; set +e; stop_writers; (exit $st); bench_cleanup' EXIT

DIR="$BENCH_ROOT/cluster"
SPEC="$BENCH_ROOT/switchover.yaml"
# shellcheck disable=SC2046
require_ports_free $(seq "$PORT0" $((PORT0 + NODES - 1)))
# shellcheck disable=SC2046
write_spec "$SPEC" bench_switchover "$DIR" "{mode: any, count: 1}" $(seq "$PORT0" $((PORT0 + NODES - 1)))
BENCH_SPECS+=("$SPEC")

say "bench-switchover: pgcluster switchover under $CLIENTS writers and one held connection"
machine_line
say "cluster: 1 primary + 2 standbys, synchronous ANY 1, TLS on; $RUNS runs"
"$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init failed"; }
SU_USER="$(json_login "$DIR/credentials.json" superuser user)"
SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
DSN="$("$PGCLUSTER" dsn -f "$SPEC")"
sql db_0 "CREATE TABLE bench_switchover (id text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" >/dev/null

COMMANDS=()
GAPS=()
LOSTS=()
for run in $(seq 1 "$RUNS"); do
    deadline=$(($(date +%s) + 60))
    until primary="$(primary_now)" && [ "$(streaming_count "$primary")" -eq 2 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || die "run $run: no healthy cluster to start from"
        sleep 0.1
    done
    candidate="db_$(((${primary#db_} + 1) % NODES))"
    : >"$BENCH_ROOT/acks-r$run"
    : >"$BENCH_ROOT/pooled-r$run"
    for client in $(seq 1 "$CLIENTS"); do insert_writer "$DSN" bench_switchover "r$run" "$client" & WRITERS+=($!); done
    pooled_writer "$DSN" bench_switchover "r$run" pool & WRITERS+=($!)
    sleep 2
    t0="$(now)"
    "$PGCLUSTER" switchover --candidate "$candidate" --json -f "$SPEC" >"$BENCH_ROOT/switchover-$run.json" 2>"$BENCH_ROOT/switchover-$run.log" ||
        { sed 's/^/  | /' "$BENCH_ROOT/switchover-$run.log" >&2; die "run $run: switchover failed"; }
    t1="$(now)"
    sleep 1
    touch "$BENCH_ROOT/stop-r$run"
    stop_writers
    command="$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')"
    # The longest pause between acknowledgements (all writers), within [t0 - 1 s, t1 + 1 s].
    gap="$(cat "$BENCH_ROOT/acks-r$run" "$BENCH_ROOT/pooled-r$run" | awk -v a="$t0" -v b="$t1" '$3 >= a - 1 && $3 <= b + 1 { print $3 }' |
        sort -g | awk 'NR > 1 && $1 - last > max { max = $1 - last } { last = $1 } END { printf "%.3f", max }')"
    acked="$(cat "$BENCH_ROOT/acks-r$run" "$BENCH_ROOT/pooled-r$run" | wc -l)"
    present="$(sql "$candidate" "SELECT count(*) FROM bench_switchover WHERE id = ANY('{$(cat "$BENCH_ROOT/acks-r$run" "$BENCH_ROOT/pooled-r$run" | awk '{ print $1 }' | paste -sd, -)}'::text[])")"
    lost=$((acked - present))
    COMMANDS+=("$command")
    GAPS+=("$gap")
    LOSTS+=("$lost")
    printf 'run %s/%s: %s -> %s, command %s s (its steps %s s), longest gap between writes %s s; acknowledged %s, lost %s\n' \
        "$run" "$RUNS" "$primary" "$candidate" "$command" "$(awk -v s="$(json_field "$BENCH_ROOT/switchover-$run.json" totalSeconds)" 'BEGIN { printf "%.3f", s }')" "$gap" "$acked" "$lost"
    printf '         steps: %s\n' "$(json_steps "$BENCH_ROOT/switchover-$run.json" | awk -F'\t' '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')"
done

say ""
printf '%-44s %8s %8s %8s\n' "switchover (ANY 1, TLS, 5 writers)" median min max
printf '%-44s %8s %8s %8s\n' "command, start to exit" "$(median "${COMMANDS[@]}")" "$(minimum "${COMMANDS[@]}")" "$(maximum "${COMMANDS[@]}")"
printf '%-44s %8s %8s %8s\n' "longest gap between acknowledged writes" "$(median "${GAPS[@]}")" "$(minimum "${GAPS[@]}")" "$(maximum "${GAPS[@]}")"
say "lost per run: ${LOSTS[*]}"
say "goals: command <= 0.300 s, gap <= 0.150 s, lost 0"
