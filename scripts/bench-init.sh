#!/usr/bin/env bash
# Wall time of `pgcluster init` against the same cluster built by hand.
#
# What is measured: for a primary with 2 standbys (1+2) and with 4 standbys (1+4), the
# wall time from the start of the command until every standby streams from the primary:
#
#   pgcluster  `pgcluster init -f SPEC` (async mode): initdb, config, start the primary,
#              replication role and slots, pg_basebackup of every standby (pgcluster runs
#              them in parallel), start them, wait until all stream, apply the mode, print
#              the status table. Timed from exec to exit.
#   manual     one shell script with the steps an operator types, run sequentially as
#              people do: initdb (--auth=scram-sha-256, --pwfile), a minimal
#              postgresql.conf / pg_hba.conf (127.0.0.1, wal_level replica,
#              max_wal_senders 10, hot_standby on, SCRAM), pg_ctl -w start, CREATE ROLE
#              ... REPLICATION, then per standby: pg_basebackup -X stream -c fast -R, set its
#              port, pg_ctl -w start; finally poll pg_stat_replication with psql (every
#              50 ms, as pgcluster polls) until all are streaming.
#
# Why it is fair: both build the same thing (same binaries, same machine, same
# authentication, same initdb encoding and locale, every standby started from a base backup
# and streaming from the primary) and both stop the clock at the same observable state (all
# standbys streaming). Both run as the server's OS user (setpriv when we are root, which
# costs the same for both). Each measurement is repeated RUNS times, pgcluster and manual
# alternate (and swap which goes first every other run), each cluster is destroyed before
# the next, and medians are reported. pgcluster does a little more than the manual script
# (replication slots, synchronous mode, a status table at the end); the manual script
# clones standbys one after another, which is what people do by hand; pgcluster clones two
# at once, and with more standbys on a host (all are on this machine here) takes one base
# backup and copies it for the others, which is one of the things being measured. The first run of each pays for
# cold caches; the median absorbs it.
#
# Usage: scripts/bench-init.sh     (env: RUNS=3, PGCLUSTER=.build/release/pgcluster)
# Uses ports 22000-22049 and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

RUNS="${RUNS:-3}"
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
SIZES=(2 4)

# Ports: pgcluster 1+2 22000.., manual 1+2 22010.., pgcluster 1+4 22020.., manual 1+4 22030..
pgcluster_port0() { [ "$1" -eq 2 ] && echo 22000 || echo 22020; }
manual_port0() { [ "$1" -eq 2 ] && echo 22010 || echo 22030; }
ports_from() { seq "$1" $(($1 + $2)); }

bench_setup

# The operator's script: run as the server's OS user, arguments DIR STANDBYS PORT0.
MANUAL="$BENCH_ROOT/manual-init.sh"
cat >"$MANUAL" <<'EOF'
#!/usr/bin/env bash
# Build a primary + N streaming standbys by hand: what an operator types, in order.
set -euo pipefail
DIR="$1" N="$2" PORT0="$3" BIN="$4"
SUPERPW="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
REPLPW="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
umask 077
printf '%s\n' "$SUPERPW" >"$DIR/pwfile"
printf '*:*:*:postgres:%s\n*:*:*:replicator:%s\n' "$SUPERPW" "$REPLPW" >"$DIR/pgpass"
export PGPASSFILE="$DIR/pgpass"

"$BIN/initdb" -D "$DIR/node0" -U postgres --pwfile="$DIR/pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log"
rm -f "$DIR/pwfile"
cat >"$DIR/node0/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT0
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 10
hot_standby = on
CONF
cat >"$DIR/node0/pg_hba.conf" <<CONF
local   all          all                        scram-sha-256
host    all          all          127.0.0.1/32  scram-sha-256
host    replication  replicator   127.0.0.1/32  scram-sha-256
CONF
"$BIN/pg_ctl" -D "$DIR/node0" -l "$DIR/node0.log" -w start >/dev/null
"$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT0" -U postgres -d postgres \
    -c "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '$REPLPW'"

for i in $(seq 1 "$N"); do
    "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PORT0" -U replicator -D "$DIR/node$i" -X stream -c fast -R
    echo "port = $((PORT0 + i))" >>"$DIR/node$i/postgresql.conf"
    "$BIN/pg_ctl" -D "$DIR/node$i" -l "$DIR/node$i.log" -w start >/dev/null
done

for _ in $(seq 1 1200); do   # 60 s
    streaming="$("$BIN/psql" -X -qAt -h 127.0.0.1 -p "$PORT0" -U postgres -d postgres \
        -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
    [ "$streaming" -eq "$N" ] && exit 0
    sleep 0.05
done
echo "standbys not streaming after 60 s ($streaming of $N)" >&2
exit 1
EOF
chmod 755 "$MANUAL"

# run_pgcluster SIZE RUN -> prints seconds
run_pgcluster() {
    local size="$1" run="$2" spec="$BENCH_ROOT/pgcluster-1+$1.yaml" log="$BENCH_ROOT/pgcluster-1+$1-run$2.log" start seconds
    # shellcheck disable=SC2046
    require_ports_free $(ports_from "$(pgcluster_port0 "$size")" "$size")
    start="$(now)"
    if ! "$PGCLUSTER" init -f "$spec" >"$log" 2>&1; then
        sed 's/^/  | /' "$log" >&2
        die "pgcluster init (1+$size, run $run) failed"
    fi
    seconds="$(elapsed "$start")"
    if ! "$PGCLUSTER" destroy --yes -f "$spec" >>"$log" 2>&1; then
        sed 's/^/  | /' "$log" >&2
        die "pgcluster destroy (1+$size, run $run) failed"
    fi
    [ ! -e "$BENCH_ROOT/pgcluster-1+$size" ] || die "pgcluster destroy left $BENCH_ROOT/pgcluster-1+$size behind"
    echo "$seconds"
}

# run_manual SIZE RUN -> prints seconds
run_manual() {
    local size="$1" run="$2" dir="$BENCH_ROOT/manual-1+$1" log="$BENCH_ROOT/manual-1+$1-run$2.log" start seconds
    # shellcheck disable=SC2046
    require_ports_free $(ports_from "$(manual_port0 "$size")" "$size")
    mkdir -p "$dir"
    give_to_pg "$dir"
    start="$(now)"
    if ! as_pg bash "$MANUAL" "$dir" "$size" "$(manual_port0 "$size")" "$PGBIN" >"$log" 2>&1; then
        sed 's/^/  | /' "$log" >&2
        die "manual init (1+$size, run $run) failed"
    fi
    seconds="$(elapsed "$start")"
    stop_all_under "$dir"
    rm -rf "$dir"
    echo "$seconds"
}

say "bench-init: pgcluster init vs the same steps by hand, $RUNS runs per size"
machine_line
say ""

declare -A PGC MAN
for size in "${SIZES[@]}"; do
    # shellcheck disable=SC2046
    write_spec "$BENCH_ROOT/pgcluster-1+$size.yaml" "bench_init_$size" "$BENCH_ROOT/pgcluster-1+$size" \
        "{mode: async}" $(ports_from "$(pgcluster_port0 "$size")" "$size")
    PGC[$size]="" MAN[$size]=""
done

printf '%-4s %-5s %12s %12s\n' run size "pgcluster s" "manual s"
for run in $(seq 1 "$RUNS"); do
    for size in "${SIZES[@]}"; do
        # Alternate which goes first, so neither always gets the warmer caches.
        if [ $((run % 2)) -eq 1 ]; then
            p="$(run_pgcluster "$size" "$run")"
            m="$(run_manual "$size" "$run")"
        else
            m="$(run_manual "$size" "$run")"
            p="$(run_pgcluster "$size" "$run")"
        fi
        PGC[$size]+=" $p" MAN[$size]+=" $m"
        printf '%-4s %-5s %12s %12s\n' "$run" "1+$size" "$p" "$m"
    done
done

say ""
printf '%-5s %18s %15s %22s\n' size "pgcluster median s" "manual median s" "ratio pgcluster/manual"
declare -A PMED MMED
for size in "${SIZES[@]}"; do
    # shellcheck disable=SC2086
    PMED[$size]="$(median ${PGC[$size]})"
    # shellcheck disable=SC2086
    MMED[$size]="$(median ${MAN[$size]})"
    printf '%-5s %18s %15s %22s\n' "1+$size" "${PMED[$size]}" "${MMED[$size]}" "$(ratio "${PMED[$size]}" "${MMED[$size]}")"
done
say ""
say "scaling, time(1+4)/time(1+2): pgcluster $(ratio "${PMED[4]}" "${PMED[2]}"), manual $(ratio "${MMED[4]}" "${MMED[2]}")"
say ""
for size in "${SIZES[@]}"; do
    say "bench-init size=1+$size pgcluster=${PMED[$size]} manual=${MMED[$size]} ratio=$(ratio "${PMED[$size]}" "${MMED[$size]}")"
done
