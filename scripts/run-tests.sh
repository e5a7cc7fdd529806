#!/usr/bin/env bash
# `make test`: every test, unit and integration, in one run.
#
#  - The container engine for the compose tests (scripts/compose-engine.sh) is prepared and
#    started beside the build when it is not running and we are root, and stopped afterwards
#    (only what this run started). Not root: the compose tests say they skip, and the one
#    line that starts the engine is printed.
#  - Then the build of every target and the tests, and at the end the slowest suites, one
#    line each, and the plain count line.
#
# PGCLUSTER_TEST_ENGINE=0 skips the engine (the compose tests then skip).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
SWIFT="${SWIFT:-swift}"
log="$(mktemp)"
engine_log="$(mktemp)"
started_engine=0
engine_pid=""

shm_before="$(mktemp)"
ls /dev/shm >"$shm_before" 2>/dev/null

# A server killed with kill -9 (many tests do) leaves its dynamic shared memory segments in
# /dev/shm, in memory until the machine restarts; its data directory is gone with the test,
# so no restart cleans them. Removed: the segments this run made that no process maps.
sweep_shm() {
    local mapped
    mapped="$(cat /proc/[0-9]*/maps 2>/dev/null | grep -o '/dev/shm/PostgreSQL\.[0-9]*' | sort -u)"
    for segment in /dev/shm/PostgreSQL.*; do
        [ -e "$segment" ] || continue
        grep -qxF "${segment#/dev/shm/}" "$shm_before" && continue
        grep -qxF "$segment" <<<"$mapped" && continue
        rm -f "$segment"
    done
}

cleanup() {
    [ -n "$engine_pid" ] && kill "$engine_pid" 2>/dev/null
    if [ "$started_engine" -eq 1 ]; then scripts/compose-engine.sh down; fi
    sweep_shm
    rm -f "$log" "$engine_log" "$shm_before"
}
trap cleanup EXIT

scripts/embed-templates.sh --check || exit 1

# The engine is made ready while the code builds: both take minutes on a new machine.
if [ "${PGCLUSTER_TEST_ENGINE:-1}" = 0 ]; then
    echo "test: PGCLUSTER_TEST_ENGINE=0: the compose tests will be skipped" >&2
elif scripts/compose-engine.sh status >/dev/null 2>&1; then
    echo "test: a container engine already runs; the compose tests use it" >&2
elif [ "$(id -u)" -eq 0 ]; then
    started_engine=1
    scripts/compose-engine.sh up >"$engine_log" 2>&1 &
    engine_pid=$!
else
    echo "test: no container engine runs, so the compose tests will be skipped; to run them too:" >&2
    echo "  sudo scripts/compose-engine.sh up && export $(scripts/compose-engine.sh env)" >&2
fi

build_started=$(date +%s)
"$SWIFT" build --build-tests || exit 1
echo "test: built in $(( $(date +%s) - build_started )) s" >&2

if [ -n "$engine_pid" ]; then
    if wait "$engine_pid"; then
        echo "test: container engine ready" >&2
    else
        echo "test: no container engine could be started; the compose tests will be skipped. Its log:" >&2
        sed 's/^/  /' "$engine_log" >&2
    fi
    engine_pid=""
fi
if scripts/compose-engine.sh status >/dev/null 2>&1; then
    export "$(scripts/compose-engine.sh env)"
fi

tests_started=$(date +%s)
"$SWIFT" test --skip-build 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "test: tests ran in $(( $(date +%s) - tests_started )) s" >&2

# The slowest suites by their tests' own run time: the cluster-slot trait prints, after
# each integration test, how long it waited for a slot and how long it ran (Swift
# Testing's own durations, and a suite's closing line, include the wait).
echo "slowest suites (their tests' own run time; the wait for a cluster slot beside it):"
grep -aE '^cluster slot: [^ ]+ .*: waited [0-9.]+ s, ran [0-9.]+ s$' "$log" \
    | awk '{ suite = $3; ran[suite] += $(NF - 1); waited[suite] += $(NF - 4); tests[suite]++ }
        END { for (s in ran) printf "%10.1f s  %3d tests  %-22s (waited %.1f s)\n", ran[s], tests[s], s, waited[s] }' \
    | sort -rn | head -n 10

count=$(grep -aEo 'Test run with [0-9]+ tests' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
failed=$(grep -aEo 'with [0-9]+ issues?' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
if [ "$status" -eq 0 ]; then
    if [ -z "$count" ] || [ "$count" -eq 0 ]; then
        echo "test: no test ran" >&2
        exit 1
    fi
    echo "tests: $count passed, 0 failed"
else
    echo "test: FAILED (exit $status)${count:+; $count tests}${failed:+, $failed issues}" >&2
    grep -aE '^✘ Test .* (failed|recorded an issue)' "$log" | head -n 20 >&2 || true
fi
exit "$status"
