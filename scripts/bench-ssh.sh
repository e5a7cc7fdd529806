#!/usr/bin/env bash
# Backend ssh beside backend local, in one run: `init` of 1 primary + 2 standbys, and
# `failover` after a kill -9 of the primary, until a write commits on the new primary.
#
# What is measured, for each backend, RUNS times (median, min, max):
#   init      `pgcluster init` of a fresh cluster (ANY 1), until it exits (all streaming);
#   failover  from the start of `pgcluster failover` (just after kill -9 of the primary's
#             postmaster, on its host) until an INSERT commits on the new primary through
#             psql — with ANY 1 that needs the remaining standby to have followed.
# The ssh cluster lives on three test hosts made by scripts/test-hosts.sh (network
# namespaces on a bridge, each with its own sshd and ssh.dir): every server-side step
# crosses a real ssh connection (multiplexed, one per host), and libpq crosses the bridge.
# A third column, "ssh+backup", is the ssh cluster with `backup.repoHost` on a fourth test
# host: a WAL archive by pgBackRest over ssh, restore_command on every standby.
# Both backends run on this 2-core machine: compare the ratio, not the absolute figures.
#
# Usage: scripts/bench-ssh.sh      (env: RUNS=3, PGCLUSTER=.build/release/pgcluster)
# Needs root (test hosts). Uses ports 22060-22062 locally and 5432 on the test hosts, a
# folder /tmp/pgcluster-bench-XXXXXX; removes the hosts and the folder on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

RUNS="${RUNS:-3}"
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
[ "$(id -u)" -eq 0 ] || die "the ssh benchmark makes test hosts (network namespaces): run it as root"
HOSTS="$REPO_ROOT/scripts/test-hosts.sh"
PORT0=22060

bench_setup
"$HOSTS" down >/dev/null 2>&1 || true
"$HOSTS" up 4 >/dev/null
trap '"$HOSTS" down >/dev/null 2>&1 || true; bench_cleanup' EXIT

# spec BACKEND RUN -> path of a fresh spec for that backend.
spec() {
    local backend=$1 run=$2 file="$BENCH_ROOT/$1-$2.yaml"
    {
        echo "version: 1"
        echo "name: b$backend$run"
        echo "postgres: {version: 15, parameters: {shared_buffers: 32MB, max_wal_size: 256MB}}"
        echo "replication: {synchronous: {mode: any, count: 1}}"
        echo "local: {dir: $BENCH_ROOT/$backend-$run}"
        if [ "$backend" = sshbackup ]; then
            echo "backup: {repoHost: 10.213.7.14, repo: /var/lib/pgcluster-test/repo-$run}"
        fi
        if [ "$backend" != local ]; then
            echo "backend: ssh"
            echo "network: {allow: [10.213.7.0/24]}"
            echo "ssh: {user: root, identityFile: /run/pgcluster-test-hosts/id_ed25519, dir: /var/lib/pgcluster-test}"
            echo "nodes:"
            echo "  - {name: db_0, host: 10.213.7.11, port: 5432, role: primary}"
            echo "  - {name: db_1, host: 10.213.7.12, port: 5432}"
            echo "  - {name: db_2, host: 10.213.7.13, port: 5432}"
        else
            echo "nodes:"
            echo "  - {name: db_0, port: $PORT0, role: primary}"
            echo "  - {name: db_1, port: $((PORT0 + 1))}"
            echo "  - {name: db_2, port: $((PORT0 + 2))}"
        fi
    } >"$file"
    BENCH_SPECS+=("$file")
    echo "$file"
}

# address BACKEND NODE -> host and port of a node.
address() {
    if [ "$1" != local ]; then echo "10.213.7.$((11 + ${2#db_})) 5432"; else echo "127.0.0.1 $((PORT0 + ${2#db_}))"; fi
}

# kill_primary BACKEND SPEC: kill -9 of db_0's postmaster, where it runs.
kill_primary() {
    if [ "$1" != local ]; then
        "$HOSTS" exec h1 sh -c "kill -9 \$(head -n 1 /var/lib/pgcluster-test/$(awk '/^name:/ { print $2 }' "$2")/db_0/data/postmaster.pid)"
    else
        kill -9 "$(head -n 1 "$(dirname "$2")/$1-$3/db_0/data/postmaster.pid")"
    fi
}

# write_on BACKEND SPEC NODE: retries an INSERT until it commits (10 ms apart).
write_on() {
    local host port password
    read -r host port <<<"$(address "$1" "$3")"
    password=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['superuser']['password'])" \
        "$(awk '/^local:/ { gsub(/[{}]/, ""); print $3 }' "$2")/credentials.json")
    for _ in $(seq 1 1000); do
        if PGPASSWORD="$password" PGCONNECT_TIMEOUT=2 "$PGBIN/psql" -X -qAt -h "$host" -p "$port" -U postgres -d postgres \
            -c "CREATE TABLE IF NOT EXISTS bench (x int); INSERT INTO bench VALUES (1)" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.01
    done
    die "no write committed on $3 ($host:$port)"
}

declare -A INIT FAILOVER
for backend in local ssh sshbackup; do
    for run in $(seq 1 "$RUNS"); do
        file=$(spec "$backend" "$run")
        start=$(now)
        "$PGCLUSTER" init -f "$file" >/dev/null 2>&1 || die "$backend init failed: $("$PGCLUSTER" init -f "$file" 2>&1 | tail -n 3)"
        INIT[$backend]+="$(elapsed "$start") "
        kill_primary "$backend" "$file" "$run"
        start=$(now)
        report=$("$PGCLUSTER" failover --json -f "$file" 2>/dev/null) || die "$backend failover failed"
        candidate=$(python3 -c "import json,sys; print(json.load(sys.stdin)['candidate'])" <<<"$report")
        write_on "$backend" "$file" "$candidate"
        FAILOVER[$backend]+="$(elapsed "$start") "
        "$PGCLUSTER" destroy --yes -f "$file" >/dev/null 2>&1 || true
    done
done

say "backend ssh beside backend local: 1 primary + 2 standbys, ANY 1, $RUNS runs each (median, min-max, seconds)"
machine_line
printf '%-10s %-22s %-22s %-22s %-10s %s\n' step local ssh ssh+backup "ssh/local" "ssh+backup/ssh"
for step in init failover; do
    declare -n figures=${step^^}
    # shellcheck disable=SC2086
    l=$(median ${figures[local]}) s=$(median ${figures[ssh]}) b=$(median ${figures[sshbackup]})
    # shellcheck disable=SC2086
    printf '%-10s %-22s %-22s %-22s %-10s %s\n' "$step" "$l ($(minimum ${figures[local]})-$(maximum ${figures[local]}))" \
        "$s ($(minimum ${figures[ssh]})-$(maximum ${figures[ssh]}))" \
        "$b ($(minimum ${figures[sshbackup]})-$(maximum ${figures[sshbackup]}))" "$(ratio "$s" "$l")" "$(ratio "$b" "$s")"
done
