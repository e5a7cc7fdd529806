#!/usr/bin/env bash
# The compose backend beside the local one: `pgcluster init`, `failover` and `switchover`
# on the same three-node cluster (a primary and 2 standbys, ANY 1), in one run.
#
# Each run, on each backend: time `pgcluster init` (compose: render, `docker compose up
# -d`, every standby cloned and streaming, the synchronous mode applied); kill the primary
# (local: kill -9 of its postmaster; compose: `docker compose kill` of its container) and
# time `pgcluster failover`; bring it back with `rejoin` (not counted); time `pgcluster
# switchover` back to it; then `destroy` (not counted). Each figure is the command from
# start to exit; the step timings of the last run's failover and switchover come from
# their own JSON reports.
#
# Usage: scripts/bench-compose.sh     (env: RUNS=3, PGCLUSTER=.build/release/pgcluster)
# Needs the engine of scripts/compose-engine.sh (DOCKER_HOST, or its socket); uses ports
# 22120-22122 and 22130-22132 and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

RUNS="${RUNS:-3}"
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
export DOCKER_HOST="${DOCKER_HOST:-$("$REPO_ROOT/scripts/compose-engine.sh" env | cut -d= -f2-)}"
docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 \
    || die "no container engine answers at $DOCKER_HOST: start one with scripts/compose-engine.sh up"

bench_setup

LOCAL_SPEC="$BENCH_ROOT/local.yaml"
COMPOSE_SPEC="$BENCH_ROOT/compose.yaml"
# shellcheck disable=SC2046
require_ports_free $(seq 22120 22122) $(seq 22130 22132)
write_spec "$LOCAL_SPEC" bench_local "$BENCH_ROOT/local" "{mode: any, count: 1}" 22120 22121 22122
PROJECT="pgc-bench-$(basename "$BENCH_ROOT" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')"
cat >"$COMPOSE_SPEC" <<EOF
# Written by scripts/bench-compose.sh.
version: 1
name: bench_compose
backend: compose
replication:
  synchronous: {mode: any, count: 1}
local:
  dir: $BENCH_ROOT/compose
compose: {project: $PROJECT, image: postgres:15, subnet: 172.29.130.0/24}
nodes:
  - {name: db_0, port: 22130, role: primary}
  - {name: db_1, port: 22131}
  - {name: db_2, port: 22132}
EOF
BENCH_SPECS+=("$LOCAL_SPEC" "$COMPOSE_SPEC")

# timed LOG COMMAND...: runs it, prints its seconds; on failure shows its output and stops.
timed() {
    local log="$1" start
    shift
    start="$(now)"
    if ! "$@" >"$log" 2>"$log.err"; then
        sed 's/^/  | /' "$log" "$log.err" >&2
        die "failed: $*"
    fi
    elapsed "$start"
}

kill_primary() {
    local backend="$1"
    case "$backend" in
    local)
        kill -9 "$(head -n1 "$BENCH_ROOT/local/db_0/data/postmaster.pid")"
        ;;
    compose)
        docker compose --project-directory "$BENCH_ROOT/compose/compose" -p "$PROJECT" kill db_0 >/dev/null 2>&1
        ;;
    esac
}

# The figures, by backend and step: INIT_local, FAILOVER_compose, ...
declare -A FIGURES
add() { FIGURES[$1]="${FIGURES[$1]:-} $2"; }

say "bench-compose: init, failover and switchover, local processes beside compose containers"
machine_line
say "engine: $(docker info --format '{{.ServerVersion}}' 2>/dev/null | head -n1) at $DOCKER_HOST; $(docker compose version 2>/dev/null)"
say "cluster: 1 primary + 2 standbys, synchronous ANY 1, $RUNS runs each"

for run in $(seq 1 "$RUNS"); do
    for backend in local compose; do
        spec="$BENCH_ROOT/$backend.yaml"
        log="$BENCH_ROOT/$backend-$run"
        t_init="$(timed "$log-init" "$PGCLUSTER" init -f "$spec")"
        "$PGCLUSTER" status -f "$spec" >/dev/null || die "$backend: not healthy after init"
        kill_primary "$backend"
        t_failover="$(timed "$log-failover.json" "$PGCLUSTER" failover --json -f "$spec")"
        timed "$log-rejoin" "$PGCLUSTER" rejoin db_0 -f "$spec" >/dev/null
        t_switchover="$(timed "$log-switchover.json" "$PGCLUSTER" switchover --candidate db_0 --json -f "$spec")"
        "$PGCLUSTER" status -f "$spec" >/dev/null || die "$backend: not healthy after the switchover"
        timed "$log-destroy" "$PGCLUSTER" destroy --yes -f "$spec" >/dev/null
        add "init_$backend" "$t_init"
        add "failover_$backend" "$t_failover"
        add "switchover_$backend" "$t_switchover"
        printf 'run %d %-8s init %s s, failover %s s (its steps %.3f s), switchover %s s (its steps %.3f s)\n' \
            "$run" "$backend" "$t_init" "$t_failover" "$(json_field "$log-failover.json" totalSeconds)" \
            "$t_switchover" "$(json_field "$log-switchover.json" totalSeconds)"
    done
done

say ""
say "median of $RUNS runs, each command from start to exit (min-max):"
printf '%-12s %-22s %-22s\n' "" "local" "compose"
for step in init failover switchover; do
    # shellcheck disable=SC2086
    printf '%-12s %-22s %-22s\n' "$step" \
        "$(median ${FIGURES[${step}_local]}) s ($(minimum ${FIGURES[${step}_local]})-$(maximum ${FIGURES[${step}_local]}))" \
        "$(median ${FIGURES[${step}_compose]}) s ($(minimum ${FIGURES[${step}_compose]})-$(maximum ${FIGURES[${step}_compose]}))"
done
for what in failover switchover; do
    say ""
    say "compose $what, last run, its steps:"
    json_steps "$BENCH_ROOT/compose-$RUNS-$what.json" | while IFS=$'\t' read -r seconds name; do
        printf '  %8s s  %s\n' "$seconds" "$name"
    done
done
