#!/usr/bin/env bash
# What TLS (tls.mode generate, the default) costs: `pgcluster init` and `pgcluster failover`
# with TLS on and off, in one run, on the same machine, alternating so that a drift of the
# machine's load hits both alike.
#
# init: a primary and 2 standbys (async), from nothing to all streaming, timed from outside
# (the command's wall time), then `destroy --yes`; TLS on and off alternate, RUNS each. TLS
# on includes making the cluster CA and signing three certificates.
# failover: scripts/bench-failover.sh run once with TLS_MODE=off and once with
# TLS_MODE=generate (RUNS kills each); its median "total" (kill -9 of the primary until a
# write commits on the new primary and the other standby streams) is compared.
#
# Goal (issue 15): TLS adds at most 0.3 s to init and at most 10 % to failover.
#
# Usage: scripts/bench-tls.sh     (env: RUNS=5, PGCLUSTER=.build/release/pgcluster)
# Uses ports 22060-22062 (and 22050-22052 through bench-failover.sh) and folders
# /tmp/pgcluster-bench-XXXXXX, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

RUNS="${RUNS:-5}"
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer, not '$RUNS'" ;; esac
PORTS=(22060 22061 22062)

bench_setup
require_ports_free "${PORTS[@]}"

say "bench-tls: pgcluster init and failover with TLS on (tls.mode generate) and off"
machine_line
say ""

INIT_ON=() INIT_OFF=()
for run in $(seq 1 "$RUNS"); do
    for mode in generate off; do
        spec="$BENCH_ROOT/init-$mode-$run.yaml"
        TLS_MODE="$mode" write_spec "$spec" "bench_tls_$mode" "$BENCH_ROOT/init-$mode-$run" "{mode: async}" "${PORTS[@]}"
        BENCH_SPECS+=("$spec")
        start="$(now)"
        "$PGCLUSTER" init -f "$spec" >"$BENCH_ROOT/init.log" 2>&1 || { sed 's/^/  | /' "$BENCH_ROOT/init.log" >&2; die "init ($mode) failed"; }
        seconds="$(elapsed "$start")"
        "$PGCLUSTER" destroy --yes -f "$spec" >/dev/null 2>&1 || die "destroy ($mode) failed"
        if [ "$mode" = generate ]; then INIT_ON+=("$seconds"); else INIT_OFF+=("$seconds"); fi
        printf 'init run %d/%d, TLS %-8s %s s\n' "$run" "$RUNS" "$mode:" "$seconds"
    done
done

say ""
FAILOVER=()
for mode in off generate; do
    log="$BENCH_ROOT/failover-$mode.log"
    TLS_MODE="$mode" RUNS="$RUNS" "$(dirname "${BASH_SOURCE[0]}")/bench-failover.sh" >"$log" 2>&1 \
        || { sed 's/^/  | /' "$log" >&2; die "bench-failover.sh with TLS $mode failed"; }
    line="$(grep '^bench-failover runs=' "$log")"
    say "failover, TLS $mode: ${line#bench-failover }"
    FAILOVER+=("$(sed -n 's/.* median=\([0-9.]*\) .*/\1/p' <<<"$line")")
done

on_init="$(median "${INIT_ON[@]}")" off_init="$(median "${INIT_OFF[@]}")"
say ""
printf '%-24s %10s %10s %12s\n' "" "TLS off" "TLS on" "difference"
printf '%-24s %10s %10s %+11.3fs\n' "init (median, s)" "$off_init" "$on_init" "$(awk -v a="$on_init" -v b="$off_init" 'BEGIN { print a - b }')"
printf '%-24s %10s %10s %+11.1f%%\n' "failover total (median, s)" "${FAILOVER[0]}" "${FAILOVER[1]}" \
    "$(awk -v a="${FAILOVER[1]}" -v b="${FAILOVER[0]}" 'BEGIN { print (a / b - 1) * 100 }')"
say ""
say "bench-tls runs=$RUNS init_off=$off_init init_on=$on_init failover_off=${FAILOVER[0]} failover_on=${FAILOVER[1]}"
