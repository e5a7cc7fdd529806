# shellcheck shell=bash
# Shared helpers for scripts/bench-init.sh and scripts/bench-failover.sh. Sourced, not run.
#
# Everything a benchmark creates lives in one folder, /tmp/pgcluster-bench-XXXXXX
# ($BENCH_ROOT), and uses ports 22000-22099 only. bench_cleanup (installed as the EXIT
# trap by bench_setup) stops every server whose data folder is under $BENCH_ROOT (by
# data folder with pg_ctl, then by the PID in its postmaster.pid, never by name) and
# removes the folder, whether the benchmark succeeded or not.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PGCLUSTER="${PGCLUSTER:-$REPO_ROOT/.build/release/pgcluster}"
case "$PGCLUSTER" in /*) ;; *) PGCLUSTER="$REPO_ROOT/$PGCLUSTER" ;; esac
PG_OS_USER=postgres
BENCH_ROOT=""
# pgcluster specs to `destroy` on exit (a spec is removed from the list once destroyed).
BENCH_SPECS=()

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as the server's OS user when we are root (PostgreSQL refuses to run as
# root), directly otherwise.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups -- "$@"
    else
        "$@"
    fi
}

# Gives a folder to the server's OS user (only needed, and only possible, as root).
give_to_pg() {
    if [ "$(id -u)" -eq 0 ]; then chown -R "$PG_OS_USER:$PG_OS_USER" "$@"; fi
}

# Seconds since the epoch with nanoseconds (GNU date).
now() { date +%s.%N; }
# elapsed START -> seconds since START, 3 decimals.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# median/min/max of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n1 | awk '{ printf "%.3f", $1 }'; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n1 | awk '{ printf "%.3f", $1 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_ports_free() {
    local port
    for port in "$@"; do
        if port_busy "$port"; then die "port $port is in use; the benchmark needs ports $*"; fi
    done
}

# The PostgreSQL version string, e.g. "15.8".
pg_version() { "$PGBIN/postgres" --version | awk '{ print $3 }'; }

machine_line() {
    local cpu
    cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
    say "machine: $(nproc) CPUs${cpu:+ ($cpu)}, $(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    say "PostgreSQL $(pg_version) ($PGBIN), pgcluster $("$PGCLUSTER" --version 2>/dev/null | head -n1 || true) ($PGCLUSTER)"
}

# Creates $BENCH_ROOT and installs the cleanup trap.
bench_setup() {
    [ -x "$PGCLUSTER" ] || die "no pgcluster binary at $PGCLUSTER (build it: swift build -c release, or set PGCLUSTER)"
    [ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 binaries not found in $PGBIN"
    if [ "$(id -u)" -eq 0 ]; then
        id "$PG_OS_USER" >/dev/null 2>&1 || die "running as root needs the OS user '$PG_OS_USER' for the servers"
        command -v setpriv >/dev/null || die "running as root needs setpriv (util-linux)"
    fi
    BENCH_ROOT="$(mktemp -d /tmp/pgcluster-bench-XXXXXX)"
    # The server's OS user must be able to enter it.
    chmod 755 "$BENCH_ROOT"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# True when PID names a live process that is not a zombie.
pid_alive() {
    local pid="$1" state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Stops the server of one data folder: pg_ctl immediate, then SIGKILL by its postmaster.pid.
stop_datadir() {
    local data="$1" pid
    [ -f "$data/postmaster.pid" ] || return 0
    pid="$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)"
    # A postmaster killed earlier (kill -9) is gone, or a zombie nobody has reaped yet:
    # nothing to stop (pg_ctl would wait for the zombie until its timeout).
    pid_alive "$pid" || return 0
    as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    if [ -f "$data/postmaster.pid" ]; then
        pid="$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)"
        # Only if that PID is still a postgres process of this data folder.
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$data"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
}

# Stops every server whose data folder is under FOLDER (found by postmaster.pid).
stop_all_under() {
    local folder="$1" pidfile
    [ -d "$folder" ] || return 0
    while IFS= read -r pidfile; do
        stop_datadir "$(dirname "$pidfile")"
    done < <(find "$folder" -name postmaster.pid -print 2>/dev/null)
}

bench_cleanup() {
    local status=$? spec
    trap - EXIT INT TERM
    [ -n "$BENCH_ROOT" ] || exit "$status"
    for spec in "${BENCH_SPECS[@]}"; do
        if [ -f "$spec" ]; then "$PGCLUSTER" destroy --yes -f "$spec" >/dev/null 2>&1 || true; fi
    done
    stop_all_under "$BENCH_ROOT"
    rm -rf "$BENCH_ROOT"
    if [ "$status" -ne 0 ]; then say "benchmark failed (exit $status); cleaned up $BENCH_ROOT" >&2; fi
    exit "$status"
}

# write_spec FILE NAME DIR SYNC_YAML PORT... : a local spec, first port the primary (db_0).
# TLS_MODE (generate, the default, files or off) sets tls.mode; WAL_SEGMENT (16MB, say)
# postgres.walSegmentSize.
write_spec() {
    local file="$1" name="$2" dir="$3" sync="$4" i=0 port
    shift 4
    {
        say "# Written by scripts/bench-*.sh."
        say "version: 1"
        say "name: $name"
        say "backend: local"
        say "postgres:"
        say "  version: 15"
        say "  bindir: $PGBIN"
        if [ -n "${WAL_SEGMENT:-}" ]; then say "  walSegmentSize: $WAL_SEGMENT"; fi
        say "replication:"
        say "  synchronous: $sync"
        say "tls: {mode: ${TLS_MODE:-generate}}"
        say "local:"
        say "  dir: $dir"
        say "  osUser: $PG_OS_USER"
        say "nodes:"
        for port in "$@"; do
            say "  - name: db_$i"
            say "    port: $port"
            if [ "$i" -eq 0 ]; then say "    role: primary"; fi
            i=$((i + 1))
        done
    } >"$file"
}

# json_login FILE ROLE FIELD: reads credentials.json ({"superuser": {"user", "password"}, ...}),
# as pgcluster writes it (one key per line), with awk: no jq or python needed.
json_login() {
    local file="$1" role="$2" field="$3" value
    value="$(awk -v role="\"$role\"" -v field="\"$field\"" '
        index($0, role) && /\{/ { inside = 1; next }
        inside && /\}/ { inside = 0 }
        inside && index($0, field) {
            sub(/^[^:]*:[ \t]*"/, ""); sub(/"[ \t]*,?[ \t]*$/, ""); print; exit
        }' "$file")"
    [ -n "$value" ] || die "cannot read $role.$field from $file"
    printf '%s' "$value"
}

# json_field FILE KEY: a top-level scalar of pgcluster's pretty-printed JSON report.
json_field() { sed -n "s/^  \"$2\" : \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" "$1" | head -n1; }

# json_steps FILE: "seconds<TAB>name" per step of the report's steps array.
json_steps() {
    awk '
        /^  "steps" : \[/ { inside = 1; next }
        inside && /^  \]/ { inside = 0 }
        inside && /"name" : / { name = $0; sub(/^[^:]*: "/, "", name); sub(/",?[ \t]*$/, "", name) }
        inside && /"seconds" : / { s = $0; sub(/^[^:]*: /, "", s); sub(/,?[ \t]*$/, "", s); printf "%.3f\t%s\n", s, name }
    ' "$1"
}

# runs_or DEFAULT: RUNS from the environment (else DEFAULT), refused unless a positive integer.
runs_or() {
    RUNS="${RUNS:-$1}"
    case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
}

# The writer clients a bench starts in the background (their PIDs), and their end: each
# stops by itself once its run's stop file exists.
WRITERS=()
stop_writers() {
    local pid
    for pid in "${WRITERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    WRITERS=()
}

# --- Shared by the benches that kill a primary under writers (bench-watch, bench-haproxy, bench-switchover).
# They read PORT0, NODES, SU_USER, SU_PASS, PGBIN and BENCH_ROOT at call time.

node_port() { echo $((PORT0 + ${1#db_})); }
port_node() { echo "db_$(($1 - PORT0))"; }

sql() {
    PGPASSWORD="$SU_PASS" PGCONNECT_TIMEOUT=2 timeout 10 "$PGBIN/psql" -X -qAt -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$(node_port "$1")" -U "$SU_USER" -d postgres -c "$2"
}
streaming_count() { sql "$1" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo 0; }
primary_now() {
    local n
    for n in $(seq 0 $((NODES - 1))); do
        [ "$(sql "db_$n" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && { echo "db_$n"; return 0; }
    done
    return 1
}

# insert_writer DSN TABLE RUN CLIENT: one-row INSERTs through DSN (one psql a statement) until
# the stop file of RUN exists; "id port time" per acknowledgement, in acks-RUN.
insert_writer() {
    local dsn="$1" table="$2" run="$3" client="$4" seq=0 port
    while [ ! -e "$BENCH_ROOT/stop-$run" ]; do
        seq=$((seq + 1))
        if port="$(PGPASSWORD="$SU_PASS" PGCONNECT_TIMEOUT=1 timeout 5 "$PGBIN/psql" "$dsn" -X -qAt -v ON_ERROR_STOP=1 \
            -c "INSERT INTO $table (id) VALUES ('$run-$client-$seq') RETURNING inet_server_port()" 2>/dev/null)"; then
            printf '%s %s %s\n' "$run-$client-$seq" "$port" "$(now)" >>"$BENCH_ROOT/acks-$run"
        else
            sleep 0.01
        fi
    done
}

# pooled_writer DSN TABLE RUN CLIENT: the same INSERTs over one psql session that stays
# connected, as an application's pooled connection does. When the session breaks (the
# server went away) or a reply takes over 2 s, a new session through DSN, as a pool's
# reconnect would. "id port time" per acknowledgement, in pooled-RUN.
pooled_writer() {
    local dsn="$1" table="$2" run="$3" client="$4" seq=0 port in out session
    while [ ! -e "$BENCH_ROOT/stop-$run" ]; do
        coproc SESSION { PGPASSWORD="$SU_PASS" PGCONNECT_TIMEOUT=1 exec "$PGBIN/psql" "$dsn" -X -qAt -v ON_ERROR_STOP=1 2>/dev/null; }
        in="${SESSION[1]}" out="${SESSION[0]}" session="$SESSION_PID"
        while [ ! -e "$BENCH_ROOT/stop-$run" ]; do
            seq=$((seq + 1))
            printf "INSERT INTO %s (id) VALUES ('%s') RETURNING inet_server_port();\n" "$table" "$run-$client-$seq" >&"$in" 2>/dev/null || break
            IFS= read -r -t 2 port <&"$out" 2>/dev/null || break
            printf '%s %s %s\n' "$run-$client-$seq" "$port" "$(now)" >>"$BENCH_ROOT/pooled-$run"
        done
        kill "$session" 2>/dev/null || true
        wait "$session" 2>/dev/null || true
        sleep 0.01
    done
}
