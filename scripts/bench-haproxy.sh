#!/usr/bin/env bash
# How long applications behind HAProxy wait for a primary after kill -9, with the
# haproxy.cfg that `pgcluster render` writes and the health endpoints of `pgcluster watch`.
#
# What is measured: a primary and 2 standbys with quorum commit ANY 1, the default watch
# settings (interval 0.5 s), watch.http on 22350-22352, and Debian's HAProxy started from
# the rendered haproxy.cfg (read-write frontend 22410). Each run starts 4 writer clients,
# each a loop of one-row INSERTs through HAProxy's read-write port (one psql per statement,
# sslmode=verify-full against the cluster CA, as an application would connect), each
# acknowledged id written down with the server port that acknowledged it
# (inet_server_port(): the node behind HAProxy) and the time. Then the primary's postmaster
# is killed (kill -9). The figure is the time from the kill to the first INSERT acknowledged
# by another node; lost = acknowledged ids missing on the new primary afterwards. Between
# runs the watcher rejoins the old primary by itself; the next run waits until both
# standbys stream again. Goal: median <= 1.5 s (the writers of bench-watch.sh, through the
# multi-host DSN, take about 1 s).
#
# Usage: scripts/bench-haproxy.sh   (env: RUNS=5, PGCLUSTER=.build/release/pgcluster)
# Uses ports 22250-22252, 22350-22352, 22410-22411 and /tmp/pgcluster-bench-XXXXXX.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

runs_or 5
PORT0=22250
HTTP0=22350
RW=22410
RO=22411
NODES=3
CLIENTS=4
HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"
[ -x "$HAPROXY" ] || die "no haproxy at $HAPROXY (scripts/ensure-deps.sh installs Debian's)"

bench_setup
WATCH_PID=""
PROXY_PID=""
stop_children() {
    local pid
    for pid in "$WATCH_PID" "$PROXY_PID"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    WATCH_PID=""
    PROXY_PID=""
}
trap 'st=$?; set +e; stop_writers; stop_children; (exit $st); bench_cleanup' EXIT

DIR="$BENCH_ROOT/cluster"
SPEC="$BENCH_ROOT/haproxy.yaml"
# shellcheck disable=SC2046
require_ports_free $(seq "$PORT0" $((PORT0 + NODES - 1))) $(seq "$HTTP0" $((HTTP0 + NODES - 1))) "$RW" "$RO"
# shellcheck disable=SC2046
write_spec "$SPEC" bench_haproxy "$DIR" "{mode: any, count: 1}" $(seq "$PORT0" $((PORT0 + NODES - 1)))
printf 'watch:\n  interval: 0.5\n  failoverAfter: 2\n  http: 127.0.0.1:%s\nrouting: {rw: %s, ro: %s}\n' "$HTTP0" "$RW" "$RO" >>"$SPEC"
BENCH_SPECS+=("$SPEC")

# writer RUN CLIENT: the shared insert_writer (bench-common.sh) through $PROXY_DSN into bench_haproxy.
writer() { insert_writer "$PROXY_DSN" bench_haproxy "$1" "$2"; }

say "bench-haproxy: kill -9 the primary under $CLIENTS writers through HAProxy's read-write port"
machine_line
say "HAProxy $("$HAPROXY" -v | head -n1 | awk '{ print $3 }'); cluster: 1 primary + 2 standbys, ANY 1, watch interval 0.5 s; $RUNS runs"
"$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init failed"; }
"$PGCLUSTER" render -f "$SPEC" --out "$BENCH_ROOT/rendered" >/dev/null 2>&1 || die "pgcluster render failed"
SU_USER="$(json_login "$DIR/credentials.json" superuser user)"
SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
PROXY_DSN="host=127.0.0.1 port=$RW dbname=postgres user=$SU_USER sslmode=verify-full sslrootcert=$DIR/ca.crt"
sql db_0 "CREATE TABLE bench_haproxy (id text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" >/dev/null
"$PGCLUSTER" watch -f "$SPEC" 2>"$BENCH_ROOT/watch.log" &
WATCH_PID=$!
"$HAPROXY" -f "$BENCH_ROOT/rendered/haproxy.cfg" -db >"$BENCH_ROOT/haproxy.log" 2>&1 &
PROXY_PID=$!

declare -a FIGURES LOSTS ANSWERED
run_one() {
    local run="$1" primary old_port pid t0 first lost acked present new deadline answered n
    deadline=$(($(date +%s) + 90))
    until primary="$(primary_now)" && [ "$(streaming_count "$primary")" -eq 2 ] \
        && PGPASSWORD="$SU_PASS" PGCONNECT_TIMEOUT=1 "$PGBIN/psql" "$PROXY_DSN" -X -qAt -c "SELECT 1" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { sed 's/^/  | /' "$BENCH_ROOT/watch.log" | tail -20 >&2; die "run $run: no healthy cluster behind HAProxy"; }
        sleep 0.1
    done
    old_port="$(node_port "$primary")"
    : >"$BENCH_ROOT/acks-$run"
    for client in $(seq 1 "$CLIENTS"); do writer "$run" "$client" & WRITERS+=($!); done
    sleep 2
    pid="$(head -n1 "$DIR/$primary/data/postmaster.pid")"
    t0="$(now)"
    kill -9 "$pid"
    # When another node's /primary answers 200: the watcher's part of the outage.
    answered=""
    deadline=$(($(date +%s) + 30))
    while [ -z "$answered" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        for n in $(seq 0 $((NODES - 1))); do
            [ "db_$n" != "$primary" ] || continue
            if [ "$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS "http://127.0.0.1:$((HTTP0 + n))/primary")" = 200 ]; then
                answered="$(now)"
                break
            fi
        done
        [ -n "$answered" ] || sleep 0.01
    done
    deadline=$(($(date +%s) + 30))
    first=""
    while [ -z "$first" ]; do
        first="$(awk -v p="$old_port" -v t="$t0" '$2 != p && $3 > t { print $3; exit }' "$BENCH_ROOT/acks-$run")"
        [ -n "$first" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || die "run $run: no write acknowledged through HAProxy by another node within 30 s"
        sleep 0.02
    done
    sleep 1
    touch "$BENCH_ROOT/stop-$run"
    stop_writers
    new="$(port_node "$(tail -n1 "$BENCH_ROOT/acks-$run" | awk '{ print $2 }')")"
    acked="$(wc -l <"$BENCH_ROOT/acks-$run")"
    present="$(sql "$new" "SELECT count(*) FROM bench_haproxy WHERE id = ANY('{$(awk '{ print $1 }' "$BENCH_ROOT/acks-$run" | paste -sd, -)}'::text[])")"
    lost=$((acked - present))
    FIGURES+=("$(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')")
    ANSWERED+=("$(awk -v a="${answered:-$first}" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')")
    LOSTS+=("$lost")
    printf 'run %s/%s: %s -> %s, /primary 200 after %s s, first write through HAProxy after %s s; acknowledged %s, lost %s\n' \
        "$run" "$RUNS" "$primary" "$new" "${ANSWERED[-1]}" "${FIGURES[-1]}" "$acked" "$lost"
}

for run in $(seq 1 "$RUNS"); do run_one "$run"; done
say ""
printf '%-46s %8s %8s %8s  %s\n' "kill -9 -> first write through HAProxy" median min max "lost per run"
printf '%-46s %8s %8s %8s  %s\n' "HAProxy (rendered haproxy.cfg), watch.http" "$(median "${FIGURES[@]}")" \
    "$(minimum "${FIGURES[@]}")" "$(maximum "${FIGURES[@]}")" "${LOSTS[*]}"
printf '%-46s %8s %8s %8s\n' "  of which: kill -9 -> /primary 200 (watcher)" "$(median "${ANSWERED[@]}")" \
    "$(minimum "${ANSWERED[@]}")" "$(maximum "${ANSWERED[@]}")"
