#!/usr/bin/env bash
# How long `pgcluster watch` takes, with no command typed, to give writers a primary again.
#
# What is measured: a primary and 2 standbys with quorum commit ANY 1, the spec's default
# watch settings (interval 0.5 s, failoverAfter 2 s), and `pgcluster watch` running. Each
# run starts 4 writer clients, each a loop of one-row INSERTs through the read-write DSN
# (`pgcluster dsn`: libpq tries every node, target_session_attrs=read-write), one psql
# per statement, each acknowledged id written down with the port that acknowledged it and
# the time. Then the current primary is hit, two ways, RUNS times each:
#   kill -9   its postmaster (a crash: the watcher proves it down and fails over at once);
#   SIGSTOP   its postmaster and every child (a hung server: nothing answers, nothing is
#             proven; the watcher waits failoverAfter, until no standby streams from it,
#             fences it and fails over), SIGCONT afterwards.
# The figure is the time from the signal to the first INSERT acknowledged by another node
# (the writer's clock, taken when psql returns). Beside them, a fifth writer holds one
# session open, as an application's pooled connection does, and reconnects through the
# same DSN when it breaks: its own first write is printed per run ("held connection").
# lost = acknowledged ids (of all five writers) missing on the
# new primary afterwards. Between runs the watcher brings the old primary back by itself
# (rejoin: auto, pg_rewind); the next run waits until both standbys stream again.
#
# Then the same kill -9 with the store in etcd: plain http, and https with client
# certificates and authentication (a role limited to the cluster's prefix).
#
# Why it is fair: nobody runs a command; the clock starts at the fault and stops at a write
# that an application sees succeed, through the connection string it would use. A writer
# connects afresh per statement (psql), which adds a few ms of resolution to each figure.
#
# Usage: scripts/bench-watch.sh     (env: RUNS=7, PGCLUSTER=.build/release/pgcluster)
# Uses ports 22060-22062, 22090-22093 (etcd) and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

runs_or 7
PORT0=22060
NODES=3
CLIENTS=4

bench_setup
WATCH_PID=""
stop_watcher() {
    [ -n "$WATCH_PID" ] || return 0
    kill -TERM "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
}
trap 'st=$?; set +e; stop_writers; stop_watcher; (exit $st); bench_cleanup' EXIT

DIR="$BENCH_ROOT/cluster"
SPEC="$BENCH_ROOT/watch.yaml"
# shellcheck disable=SC2046
require_ports_free $(seq "$PORT0" $((PORT0 + NODES - 1)))
# shellcheck disable=SC2046
write_spec "$SPEC" bench_watch "$DIR" "{mode: any, count: 1}" $(seq "$PORT0" $((PORT0 + NODES - 1)))
printf 'watch:\n  interval: 0.5\n  failoverAfter: 2\n' >>"$SPEC"
BENCH_SPECS+=("$SPEC")

# writer RUN CLIENT: the shared insert_writer (bench-common.sh) through $DSN into bench_watch.
writer() { insert_writer "$DSN" bench_watch "$1" "$2"; }

say "bench-watch: kill -9 / SIGSTOP the primary under $CLIENTS writers; pgcluster watch fails over by itself"
machine_line
say "cluster: 1 primary + 2 standbys, synchronous ANY 1, watch interval 0.5 s, failoverAfter 2 s; $RUNS runs each"
"$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init failed"; }
SU_USER="$(json_login "$DIR/credentials.json" superuser user)"
SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
DSN="$("$PGCLUSTER" dsn -f "$SPEC")"
sql db_0 "CREATE TABLE bench_watch (id text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" >/dev/null
"$PGCLUSTER" watch -f "$SPEC" 2>"$BENCH_ROOT/watch.log" &
WATCH_PID=$!

# The time of the watcher's first EVENT line after T0 (epoch s): "detected" (the primary's
# connection dropped), "failover" (the decision), "promoted" (the candidate accepts writes).
event_after() {
    local event="$1" t0="$2" stamp
    while read -r stamp _; do
        stamp="$(date -d "$stamp" +%s.%N 2>/dev/null)" || continue
        if awk -v a="$stamp" -v b="$t0" 'BEGIN { exit !(a > b) }'; then echo "$stamp"; return 0; fi
    done < <(grep -E "^[0-9T:.-]+Z $event " "$BENCH_ROOT/watch.log")
    return 1
}
decided_after() { event_after failover "$1"; }
# "a -> b" as seconds with 3 decimals, or "-" when either is unknown.
span() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$2" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; else echo -; fi; }

declare -A FIGURES LOSTS AFTER POOLED
run_one() {
    local how="$1" run="$2" label="${3:-$1}" primary old_port pid pids t0 first lost acked present new deadline decided
    # A healthy cluster: one primary, both standbys streaming from it (the watcher rejoined the last one).
    deadline=$(($(date +%s) + 90))
    until primary="$(primary_now)" && [ "$(streaming_count "$primary")" -eq 2 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { sed 's/^/  | /' "$BENCH_ROOT/watch.log" | tail -20 >&2; die "$how run $run: no healthy cluster to start from"; }
        sleep 0.1
    done
    old_port="$(node_port "$primary")"
    : >"$BENCH_ROOT/acks-$run"
    : >"$BENCH_ROOT/pooled-$run"
    for client in $(seq 1 "$CLIENTS"); do writer "$run" "$client" & WRITERS+=($!); done
    pooled_writer "$DSN" bench_watch "$run" pool & WRITERS+=($!)
    sleep 2
    pid="$(head -n1 "$DIR/$primary/data/postmaster.pid")"
    t0="$(now)"
    if [ "$how" = kill ]; then
        kill -9 "$pid"
    else
        # The postmaster first, until it is stopped (it forks no backend after that), then its
        # children as they are then: listed before, a backend forked in between would answer on.
        kill -STOP "$pid"
        until [ "$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = T ]; do
            pid_alive "$pid" || die "$how run $run: the postmaster $pid exited before it stopped"
            sleep 0.001
        done
        pids="$pid $(ps -o pid= --ppid "$pid" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        kill -STOP $pids 2>/dev/null || true
    fi
    deadline=$(($(date +%s) + 30))
    first=""
    while [ -z "$first" ]; do
        first="$(awk -v p="$old_port" -v t="$t0" '$2 != p && $3 > t { print $3; exit }' "$BENCH_ROOT/acks-$run")"
        [ -n "$first" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || die "$how run $run: no write acknowledged by another node within 30 s"
        sleep 0.02
    done
    # The writer that holds its connection: its first write on another node (or "-").
    local pooled=""
    while [ -z "$pooled" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        pooled="$(awk -v p="$old_port" -v t="$t0" '$2 != p && $3 > t { print $3; exit }' "$BENCH_ROOT/pooled-$run")"
        [ -n "$pooled" ] || sleep 0.02
    done
    # shellcheck disable=SC2086
    [ "$how" = kill ] || kill -CONT $pids 2>/dev/null || true
    sleep 1
    touch "$BENCH_ROOT/stop-$run"
    stop_writers
    new="$(port_node "$(tail -n1 "$BENCH_ROOT/acks-$run" | awk '{ print $2 }')")"
    acked="$(cat "$BENCH_ROOT/acks-$run" "$BENCH_ROOT/pooled-$run" | wc -l)"
    present="$(sql "$new" "SELECT count(*) FROM bench_watch WHERE id = ANY('{$(cat "$BENCH_ROOT/acks-$run" "$BENCH_ROOT/pooled-$run" | awk '{ print $1 }' | paste -sd, -)}'::text[])")"
    lost=$((acked - present))
    FIGURES[$label]+="$(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.3f", a - b }') "
    if decided="$(decided_after "$t0")"; then AFTER[$label]+="$(awk -v a="$first" -v b="$decided" 'BEGIN { printf "%.3f", a - b }') "; fi
    LOSTS[$label]+="$lost "
    [ -z "$pooled" ] || POOLED[$label]+="$(span "$t0" "$pooled") "
    printf '%-8s run %s/%s: %s -> %s, first write on the new primary after %s s; acknowledged %s, lost %s\n' \
        "$how" "${run#?}" "$RUNS" "$primary" "$new" "$(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')" "$acked" "$lost"
    # Where the time went, on the watcher's log and the writers' clock.
    local detected promoted
    detected="$(event_after detected "$t0" || true)"
    promoted="$(event_after promoted "$t0" || true)"
    if [ "$how" = kill ]; then
        printf '         fault -> detected %s, detected -> decision %s, decision -> promoted %s, promoted -> first write %s; held connection: first write after %s s\n' \
            "$(span "$t0" "$detected")" "$(span "$detected" "$decided")" "$(span "$decided" "$promoted")" "$(span "$promoted" "$first")" "$(span "$t0" "$pooled")"
    else
        # A silent primary: failoverAfter passes, the watcher fences it (kills what still
        # runs), probes again, and decides.
        local fenced
        fenced="$(event_after fenced "$t0" || true)"
        printf '         fault -> fenced %s, fenced -> decision %s, decision -> promoted %s, promoted -> first write %s; held connection: first write after %s s\n' \
            "$(span "$t0" "$fenced")" "$(span "$fenced" "$decided")" "$(span "$decided" "$promoted")" "$(span "$promoted" "$first")" "$(span "$t0" "$pooled")"
    fi
    # The watcher's own steps of that failover (its failed-over line).
    local stamp line
    while read -r stamp _ _ line; do
        stamp="$(date -d "$stamp" +%s.%N 2>/dev/null)" || continue
        if awk -v a="$stamp" -v b="$t0" 'BEGIN { exit !(a > b) }'; then
            printf '         watcher steps: %s\n' "${line##*steps: }"
            break
        fi
    done < <(grep -E "^[0-9T:.-]+Z failed-over " "$BENCH_ROOT/watch.log")
}

for run in $(seq 1 "$RUNS"); do run_one kill "k$run"; done
for run in $(seq 1 "$RUNS"); do run_one stop "s$run"; done

say ""
printf '%-40s %8s %8s %8s  %s\n' "fault -> first write on the new primary" median min max "lost per run"
# shellcheck disable=SC2086
printf '%-40s %8s %8s %8s  %s\n' "kill -9 (postmaster gone)" "$(median ${FIGURES[kill]})" "$(minimum ${FIGURES[kill]})" "$(maximum ${FIGURES[kill]})" "${LOSTS[kill]}"
# shellcheck disable=SC2086
printf '%-40s %8s %8s %8s  %s\n' "SIGSTOP (silent, failoverAfter 2 s)" "$(median ${FIGURES[stop]})" "$(minimum ${FIGURES[stop]})" "$(maximum ${FIGURES[stop]})" "${LOSTS[stop]}"
# shellcheck disable=SC2086
printf '%-40s %8s %8s %8s\n' "kill -9, writer holding its connection" "$(median ${POOLED[kill]})" "$(minimum ${POOLED[kill]})" "$(maximum ${POOLED[kill]})"
stop_watcher
grep -c ' failed-over ' "$BENCH_ROOT/watch.log" | xargs printf 'failovers by watch: %s (history: by "watch")\n'

# The same kill -9 with the state, lock and leadership in etcd (Debian's etcd-server, on
# loopback): what the store costs a failover. Twice: plain http, then https with client
# certificates (--client-cert-auth, from `pgcluster tls etcd`) and etcd authentication with
# a role limited to the cluster's prefix, as a production etcd runs.
ETCD_PIDS=()
stop_etcds() { local pid; for pid in "${ETCD_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done; ETCD_PIDS=(); }
cp "$SPEC" "$SPEC.files"

# etcd_gateway URL PATH JSON: one call to etcd's JSON gateway (with $CURL_TLS), its reply.
CURL_TLS=()
etcd_gateway() { curl -fsS --max-time 5 "${CURL_TLS[@]}" -X POST "$1$2" -d "$3"; }

# etcd_round LABEL tls|plain PORT LETTER: an etcd on PORT (peer PORT+1), a new cluster whose
# store it is, the watcher, and RUNS kill -9 runs recorded under LABEL (runs named LETTER1...).
etcd_round() {
    local label="$1" mode="$2" port="$3" letter="$4" scheme=http flags=() store certs pass
    "$PGCLUSTER" destroy --yes -f "$SPEC" >/dev/null 2>&1 || true
    CURL_TLS=()
    if [ "$mode" = tls ]; then
        scheme=https
        certs="$BENCH_ROOT/etcd-certs"
        printf 'version: 1\nname: bench_watch\nlocal: {dir: %s}\nnodes:\n  - {name: db_0, port: %s, role: primary}\n' \
            "$BENCH_ROOT/issuer" "$PORT0" >"$BENCH_ROOT/issuer.yaml"
        "$PGCLUSTER" tls etcd -f "$BENCH_ROOT/issuer.yaml" --out "$certs" --host 127.0.0.1 >/dev/null ||
            die "pgcluster tls etcd failed"
        flags=(--cert-file "$certs/etcd-server.crt" --key-file "$certs/etcd-server.key"
            --trusted-ca-file "$certs/ca.crt" --client-cert-auth)
        CURL_TLS=(--cacert "$certs/ca.crt" --cert "$certs/pgcluster-client.crt" --key "$certs/pgcluster-client.key")
    fi
    local url="$scheme://127.0.0.1:$port"
    /usr/bin/etcd --name "bench$port" --data-dir "$BENCH_ROOT/etcd-$port" --log-level error \
        --listen-client-urls "$url" --advertise-client-urls "$url" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-cluster "bench$port=http://127.0.0.1:$((port + 1))" "${flags[@]}" >"$BENCH_ROOT/etcd-$port.log" 2>&1 &
    ETCD_PIDS+=($!)
    for _ in $(seq 1 100); do
        etcd_gateway "$url" /v3/kv/range '{"key":"AA=="}' >/dev/null 2>&1 && break
        sleep 0.1
    done
    store="endpoints: [$url], prefix: /bench"
    if [ "$mode" = tls ]; then
        # Authentication: root, and user "pgc" whose role may read and write /bench only.
        pass="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
        printf '%s\n' "$pass" >"$certs/pgc.password"
        chmod 600 "$certs/pgc.password"
        local prefix_b64 end_b64
        prefix_b64="$(printf '/bench' | base64)"
        end_b64="$(printf '/benci' | base64)"
        etcd_gateway "$url" /v3/auth/user/add "{\"name\":\"root\",\"password\":\"root-$pass\"}" >/dev/null
        etcd_gateway "$url" /v3/auth/user/grant "{\"user\":\"root\",\"role\":\"root\"}" >/dev/null
        etcd_gateway "$url" /v3/auth/user/add "{\"name\":\"pgc\",\"password\":\"$pass\"}" >/dev/null
        etcd_gateway "$url" /v3/auth/role/add '{"name":"bench"}' >/dev/null
        etcd_gateway "$url" /v3/auth/role/grant "{\"name\":\"bench\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"$prefix_b64\",\"range_end\":\"$end_b64\"}}" >/dev/null
        etcd_gateway "$url" /v3/auth/user/grant '{"user":"pgc","role":"bench"}' >/dev/null
        etcd_gateway "$url" /v3/auth/enable '{}' >/dev/null
        store="$store, ca: $certs/ca.crt, cert: $certs/pgcluster-client.crt, key: $certs/pgcluster-client.key, user: pgc, passwordFile: $certs/pgc.password"
    fi
    cp "$SPEC.files" "$SPEC"
    printf 'store: {etcd: {%s}}\n' "$store" >>"$SPEC"
    "$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init ($label) failed"; }
    SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
    DSN="$("$PGCLUSTER" dsn -f "$SPEC")"
    sql db_0 "CREATE TABLE bench_watch (id text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" >/dev/null
    "$PGCLUSTER" watch -f "$SPEC" 2>"$BENCH_ROOT/watch.log" &
    WATCH_PID=$!
    for run in $(seq 1 "$RUNS"); do run_one kill "$letter$run" "$label"; done
    stop_watcher
}

if [ -x /usr/bin/etcd ]; then
    trap 'st=$?; set +e; stop_writers; stop_watcher; "$PGCLUSTER" destroy --yes -f "$SPEC" >/dev/null 2>&1; stop_etcds; (exit $st); bench_cleanup' EXIT
    etcd_round etcd plain 22090 e
    etcd_round etcdtls tls 22092 t
    say ""
    printf '%-40s %8s %8s %8s  %s\n' "kill -9 -> first write, by store" median min max "lost per run"
    # shellcheck disable=SC2086
    printf '%-40s %8s %8s %8s  %s\n' "files store" "$(median ${FIGURES[kill]})" "$(minimum ${FIGURES[kill]})" "$(maximum ${FIGURES[kill]})" "${LOSTS[kill]}"
    # shellcheck disable=SC2086
    printf '%-40s %8s %8s %8s  %s\n' "etcd, plain http" "$(median ${FIGURES[etcd]})" "$(minimum ${FIGURES[etcd]})" "$(maximum ${FIGURES[etcd]})" "${LOSTS[etcd]}"
    # shellcheck disable=SC2086
    printf '%-40s %8s %8s %8s  %s\n' "etcd, TLS + client cert + auth" "$(median ${FIGURES[etcdtls]})" "$(minimum ${FIGURES[etcdtls]})" "$(maximum ${FIGURES[etcdtls]})" "${LOSTS[etcdtls]}"
    # shellcheck disable=SC2086
    say "etcd minus files store (kill -9 medians): $(awk -v a="$(median ${FIGURES[etcd]})" -v b="$(median ${FIGURES[kill]})" 'BEGIN { printf "%+.3f s", a - b }')"
    # shellcheck disable=SC2086
    say "etcd TLS+auth minus plain etcd (kill -9 medians): $(awk -v a="$(median ${FIGURES[etcdtls]})" -v b="$(median ${FIGURES[etcd]})" 'BEGIN { printf "%+.3f s", a - b }') (goal: at most +0.100 s)"
    # From the watcher's decision to the first write: what the store's round trips cost,
    # without the detection's phase noise.
    say ""
    printf '%-40s %8s %8s %8s\n' "decision -> first write (kill -9)" median min max
    for label in kill etcd etcdtls; do
        # shellcheck disable=SC2086
        printf '%-40s %8s %8s %8s\n' "$label" "$(median ${AFTER[$label]})" "$(minimum ${AFTER[$label]})" "$(maximum ${AFTER[$label]})"
    done
    # shellcheck disable=SC2086
    say "etcd TLS+auth minus plain etcd (medians from the decision): $(awk -v a="$(median ${AFTER[etcdtls]})" -v b="$(median ${AFTER[etcd]})" 'BEGIN { printf "%+.3f s", a - b }')"
fi
