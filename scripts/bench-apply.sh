#!/usr/bin/env bash
# How long `pgcluster apply` takes to roll a restart-needing setting (shared_buffers) through
# a primary and 2 standbys (ANY 1), and how long writers wait meanwhile.
#
# What is measured: 4 writers insert one row per transaction in a loop, each INSERT by a
# fresh psql through the read-write DSN of `pgcluster dsn` (so a writer finds the new
# primary by itself), and record the time of every INSERT that returned success. Then
# shared_buffers is changed in the spec and `pgcluster apply --json` is timed:
#   total     the command's wall-clock time;
#   gap       the longest time, from the start of apply to 1 s after its end, between two
#             acknowledged writes of any writer (the writers' own connection set-up, a few
#             ms, is included);
# and beside them, for the goal (total <= 3 x (one switchover + the standbys' restarts)):
#   switchover  `pgcluster switchover` alone, run once before (its totalSeconds);
#   restarts    the apply's own "restart standby" steps.
#
# Usage: scripts/bench-apply.sh     (env: PGCLUSTER=.build/release/pgcluster)
# Uses ports 22070-22072 and a folder /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

PORT0="${PORT0:-22070}"
NODES=3
bench_setup

DIR="$BENCH_ROOT/cluster"
SPEC="$BENCH_ROOT/apply.yaml"
# shellcheck disable=SC2046
require_ports_free $(seq "$PORT0" $((PORT0 + NODES - 1)))
# shellcheck disable=SC2046
write_spec "$SPEC" bench_apply "$DIR" "{mode: any, count: 1}" $(seq "$PORT0" $((PORT0 + NODES - 1)))
sed -i "s|^  bindir: .*|&\n  parameters:\n    shared_buffers: 32MB|" "$SPEC"
BENCH_SPECS+=("$SPEC")

json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$@"; }

say "bench-apply: change shared_buffers on 1+2 under a 4-client writer, time pgcluster apply and the longest write gap"
machine_line
say ""

"$PGCLUSTER" init -f "$SPEC" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "pgcluster init failed"; }
DSN="$("$PGCLUSTER" dsn -f "$SPEC")"
SU_PASS="$(json_login "$DIR/credentials.json" superuser password)"
PGPASSWORD="$SU_PASS" "$PGBIN/psql" -X -qAt "$DSN" -c "CREATE TABLE bench_apply (id bigserial PRIMARY KEY, c int)" >/dev/null

"$PGCLUSTER" switchover -f "$SPEC" --json >"$BENCH_ROOT/switchover.json" 2>"$BENCH_ROOT/switchover.log" || die "switchover failed"
switchover="$(json_field "$BENCH_ROOT/switchover.json" 'round(d["totalSeconds"], 3)')"

for c in 1 2 3 4; do
    (
        while [ ! -e "$BENCH_ROOT/stop" ]; do
            if PGPASSWORD="$SU_PASS" PGCONNECT_TIMEOUT=2 timeout 10 "$PGBIN/psql" -X -qAt "$DSN" \
                -c "INSERT INTO bench_apply (c) VALUES ($c)" >/dev/null 2>&1; then
                now >>"$BENCH_ROOT/acks.$c"
            else
                sleep 0.01
            fi
        done
    ) &
done
sleep 2

sed -i 's/shared_buffers: 32MB/shared_buffers: 48MB/' "$SPEC"
t0="$(now)"
"$PGCLUSTER" apply -f "$SPEC" --json >"$BENCH_ROOT/apply.json" 2>"$BENCH_ROOT/apply.log" || {
    sed 's/^/  | /' "$BENCH_ROOT/apply.log" >&2
    touch "$BENCH_ROOT/stop"; wait; die "pgcluster apply failed"
}
t1="$(now)"
sleep 1.5
touch "$BENCH_ROOT/stop"
wait

total="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
gap="$(sort -n "$BENCH_ROOT"/acks.* | awk -v a="$t0" -v b="$t1" '
    $1 < a { last = $1; next }
    $1 > b + 1 { next }
    { if (last != "" && $1 - last > max) max = $1 - last; last = $1; n++ }
    END { printf "%.3f %d", max, n }')"
restarts="$(json_field "$BENCH_ROOT/apply.json" 'round(sum(s["seconds"] for s in d["steps"] if "restart standby" in s["name"]), 3)')"
goal="$(awk -v s="$switchover" -v r="$restarts" 'BEGIN { printf "%.3f", 3 * (s + r) }')"

say "plan:"
json_field "$BENCH_ROOT/apply.json" '"\n".join("  " + s for s in d["plan"]["steps"])'
say "steps:"
json_field "$BENCH_ROOT/apply.json" '"\n".join("  %-100s %7.3f s" % (s["name"][:100], s["seconds"]) for s in d["steps"])'
say ""
say "apply total:                      $total s   (goal <= 3 x (switchover $switchover s + standby restarts $restarts s) = $goal s)"
say "longest gap between acked writes: ${gap% *} s   (goal <= 1 s; ${gap#* } writes acknowledged during apply and 1 s after)"
say "primary after apply:              $(json_field "$BENCH_ROOT/apply.json" 'd["primary"]')"
