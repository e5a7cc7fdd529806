#!/usr/bin/env bash
# Test hosts for the ssh backend: N small "machines" on this one, and their removal.
#
#   scripts/test-hosts.sh up N [--operator]   make hosts h1..hN (and the operator namespace "op")
#   scripts/test-hosts.sh down                remove everything `up` made (safe to run twice,
#                                             or after a half-failed `up`)
#   scripts/test-hosts.sh exec HOST CMD...    run CMD on HOST (h1, 1, or its address), even while
#                                             it is partitioned (nsenter, not ssh)
#   scripts/test-hosts.sh partition HOST      cut HOST off (its eth0 down, inside its namespace)
#   scripts/test-hosts.sh heal HOST           put it back
#   scripts/test-hosts.sh rekey HOST          give HOST's sshd a new host key (a "changed host")
#   scripts/test-hosts.sh status              what is up, the addresses, the key
#
# Each host hN is a network namespace pgct-hN whose eth0 (10.213.7.(10+N)/24) hangs on the
# bridge pgct-br0 (10.213.7.1 in this machine's namespace, so tests and an operator here
# reach every host), and a mount namespace (kept in $STATE/ns/hN) in which its own folders
# are mounted at the ssh.dir ($SSH_DIR), /run/postgresql, /tmp, /root and the postgres
# home: a file a node writes there is invisible to the other hosts and to this machine
# (and this machine's ~/.bashrc or ~/.pgpass does not run or leak there). Each host
# runs its own sshd on its address, port 22, key-only, which admits root and postgres with
# the key pair $STATE/id_ed25519. The optional operator namespace pgct-op (10.213.7.10, a
# network namespace only) is a machine to run a watcher on, whose link alone can be cut.
# Everything lives under $STATE; processes are stopped by pid file and by namespace,
# never by name. Needs root; installs its packages with apt.
set -euo pipefail

PREFIX=pgct
STATE=/run/pgcluster-test-hosts
SUBNET=10.213.7
BRIDGE=$PREFIX-br0
SSH_DIR=/var/lib/pgcluster-test
KEY=$STATE/id_ed25519
PG_HOME=/var/lib/postgresql

say() { printf '%s\n' "$*" >&2; }
die() { printf 'test-hosts: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

# MARK: names

# h3 | 3 | pgct-h3 | 10.213.7.13 -> h3; op | pgct-op | 10.213.7.10 -> op
host_name() {
    case "$1" in
        op | "$PREFIX-op" | "$SUBNET.10") echo op ;;
        h[0-9]*) echo "$1" ;;
        "$PREFIX"-h[0-9]*) echo "${1#"$PREFIX"-}" ;;
        [0-9]*)
            if [[ "$1" == "$SUBNET".* ]]; then echo "h$((${1##*.} - 10))"; else echo "h$1"; fi
            ;;
        *) die "unknown host '$1' (use h1, 1, op, or an address in $SUBNET.0/24)" ;;
    esac
}
host_address() { if [ "$1" = op ]; then echo "$SUBNET.10"; else echo "$SUBNET.$((10 + ${1#h}))"; fi; }
netns_of() { echo "$PREFIX-$1"; }
veth_of() { if [ "$1" = op ]; then echo "$PREFIX-vop"; else echo "$PREFIX-v${1#h}"; fi; }

require_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, mounts, sshd)"; }

# MARK: packages

ensure_packages() {
    local missing=()
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nsenter >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
    if bridged_traffic_filtered && ! command -v iptables >/dev/null 2>&1; then missing+=(iptables); fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        say "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq -o DPkg::Lock::Timeout=300 >&2
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2
    else
        say "missing packages: ${missing[*]}"
        say "install them with:"
        say "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
}

# Bridged frames pass iptables when br_netfilter is loaded (Docker loads it, and may set
# the FORWARD policy to DROP): then the hosts need a FORWARD accept rule to reach each other.
bridged_traffic_filtered() { [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ]; }

# MARK: up

up() {
    local count=$1 operator=$2
    [[ "$count" =~ ^[1-9][0-9]?$ ]] && [ "$count" -le 89 ] || die "up: N must be 1..89"
    require_root
    ensure_packages
    id postgres >/dev/null 2>&1 || die "no user 'postgres' on this machine: run scripts/ensure-deps.sh (installs postgresql-15)"
    if [ -e "$STATE" ] || ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list | grep -q "^$PREFIX-"; then
        die "test hosts are already up (or half up): run '$0 down' first"
    fi
    trap 'if [ "${done_up:-}" != yes ]; then say "up failed: removing what was made"; down || true; fi' EXIT

    mkdir -p -m 0755 "$STATE" "$STATE/ns"
    # Mount namespace files must sit on a private mount (else the kernel refuses to bind them).
    mount --bind "$STATE/ns" "$STATE/ns"
    mount --make-private "$STATE/ns"
    ssh-keygen -q -t ed25519 -N '' -C pgcluster-test-hosts -f "$KEY"
    # sshd's privilege separation folder (Debian's init script makes it; nothing runs that here).
    [ -d /run/sshd ] || { mkdir -m 0755 /run/sshd && touch "$STATE/made-run-sshd"; }
    [ -d "$SSH_DIR" ] || { mkdir -p -m 0755 "$SSH_DIR" && touch "$STATE/made-ssh-dir"; }

    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    if command -v iptables >/dev/null 2>&1; then
        iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
        touch "$STATE/iptables-rule"
    fi

    [ "$operator" = yes ] && add_netns op
    local i
    for i in $(seq 1 "$count"); do
        add_netns "h$i"
        add_host_files "h$i"
        start_sshd "h$i"
    done
    done_up=yes
    status
}

# A network namespace on the bridge with its address, loopback up.
add_netns() {
    local host=$1 ns veth
    ns=$(netns_of "$host")
    veth=$(veth_of "$host")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$(host_address "$host")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
}

# The host's own folders, its mount namespace, its sshd config and keys.
add_host_files() {
    local host=$1 dir=$STATE/$1
    mkdir -m 0755 "$dir"
    install -d -m 0755 -o postgres -g postgres "$dir/ssh-dir" "$dir/home"
    install -d -m 0700 "$dir/root-home"
    install -d -m 2775 -o postgres -g postgres "$dir/run-postgresql"
    install -d -m 1777 "$dir/tmp"
    [ -d /run/postgresql ] || { mkdir -m 2775 /run/postgresql && chown postgres:postgres /run/postgresql; }
    [ -d "$PG_HOME" ] || die "the postgres home $PG_HOME is missing"

    touch "$STATE/ns/$host"
    # Inside: the host's folders over the shared paths, then drop the copies of the other
    # hosts' namespace files (they would keep those namespaces alive).
    unshare --mount="$STATE/ns/$host" --propagation private sh -euc '
        mount --bind "$1/ssh-dir" "$2"
        mount --bind "$1/home" "$3"
        mount --bind "$1/root-home" /root
        mount --bind "$1/run-postgresql" /run/postgresql
        mount --bind "$1/tmp" /tmp
        umount -l "$4/ns"
        if [ -d /run/netns ] && grep -q " /run/netns " /proc/self/mountinfo; then umount -l /run/netns; fi
    ' sh "$dir" "$SSH_DIR" "$PG_HOME" "$STATE"

    ssh-keygen -q -t ed25519 -N '' -C "pgcluster-test-$host" -f "$dir/ssh_host_ed25519_key"
    install -m 0644 "$KEY.pub" "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<EOF
# sshd of test host $host ($(host_address "$host")), made by scripts/test-hosts.sh
ListenAddress $(host_address "$host"):22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
# The test key, and each user's own file as on any host (pgBackRest's key goes there).
AuthorizedKeysFile $dir/authorized_keys .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# Debian's postgres account is locked ('!' in /etc/shadow): without PAM sshd refuses its key.
UsePAM yes
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# Many steps at once over one multiplexed connection (the default, 10, refuses the 11th).
MaxSessions 100
MaxStartups 100:30:200
LogLevel VERBOSE
EOF
}

start_sshd() {
    local host=$1 dir=$STATE/$1
    rm -f "$dir/sshd.pid"
    in_host "$host" /usr/sbin/sshd -t -f "$dir/sshd_config"
    in_host "$host" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
    local tries=0
    until [ -s "$dir/sshd.pid" ]; do
        tries=$((tries + 1))
        [ $tries -le 100 ] || die "sshd of $host did not start: see $dir/sshd.log"
        sleep 0.05
    done
}

stop_sshd() {
    local dir=$STATE/$1 pid
    [ -s "$dir/sshd.pid" ] || return 0
    pid=$(cat "$dir/sshd.pid")
    if is_our_sshd "$pid" "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        local tries=0
        while alive "$pid" && [ $tries -lt 100 ]; do sleep 0.05; tries=$((tries + 1)); done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$dir/sshd.pid"
}

# Runs, and is not a zombie (PID 1 may take a while to reap what we killed).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# The pid in a pid file is that host's sshd (not a recycled pid).
is_our_sshd() {
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2/sshd_config"
}

# MARK: running on a host

in_host() {
    local host=$1
    shift
    local ns
    ns=$(netns_of "$host")
    [ -e "/run/netns/$ns" ] || die "no test host $host (is it up?)"
    if [ "$host" = op ]; then
        nsenter --net="/run/netns/$ns" -- "$@"
    else
        nsenter --net="/run/netns/$ns" --mount="$STATE/ns/$host" -- "$@"
    fi
}

link() {
    local host=$1 state=$2
    in_host "$host" ip link set eth0 "$state"
}

rekey() {
    local host=$1 dir=$STATE/$1
    [ "$host" != op ] || die "op runs no sshd"
    rm -f "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "pgcluster-test-$host" -f "$dir/ssh_host_ed25519_key"
    stop_sshd "$host"
    start_sshd "$host"
}

# MARK: down

# Every live pid whose network or mount namespace is the given one (by inode; a
# zombie has no namespaces left).
pids_in_namespace() {
    local file=$1 kind=$2 inode
    inode=$(stat -L -c %i "$file" 2>/dev/null) || return 0
    stat -L -c '%i %n' /proc/[0-9]*/ns/"$kind" 2>/dev/null |
        awk -v inode="$inode" '$1 == inode { split($2, part, "/"); print part[3] }'
    return 0
}

kill_namespace() {
    local net=$1 mnt=$2 pids tries=0
    while :; do
        pids=$( { pids_in_namespace "$net" net; [ -n "$mnt" ] && pids_in_namespace "$mnt" mnt; } | sort -u)
        [ -z "$pids" ] && return 0
        if [ $tries -ge 100 ]; then say "still running in $net: $pids"; return 1; fi
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.05
        tries=$((tries + 1))
    done
}

down() {
    require_root
    local failed=0 dir host ns
    # sshd first, by pid file, so no new session starts; then whatever still runs in a host
    # (servers started over ssh), found by namespace.
    for dir in "$STATE"/h* "$STATE"/op; do
        [ -d "$dir" ] && stop_sshd "$(basename "$dir")"
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" || true); do
        host=${ns#"$PREFIX"-}
        local mnt=""
        [ -e "$STATE/ns/$host" ] && mnt=$STATE/ns/$host
        kill_namespace "/run/netns/$ns" "$mnt" || failed=1
        ip netns delete "$ns" || failed=1
    done
    if [ -d "$STATE/ns" ]; then
        for file in "$STATE"/ns/*; do
            [ -e "$file" ] || continue
            if grep -q " $file " /proc/self/mountinfo; then umount "$file" || failed=1; fi
        done
        if grep -q " $STATE/ns " /proc/self/mountinfo; then umount "$STATE/ns" || failed=1; fi
    fi
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$PREFIX-" || true); do
        # (deleting one end of a veth pair deletes the other)
        if ip link show "$link" >/dev/null 2>&1; then ip link delete "$link" || failed=1; fi
    done
    if command -v iptables >/dev/null 2>&1; then
        while iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do
            iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT || { failed=1; break; }
        done
    fi
    if [ -e "$STATE/made-ssh-dir" ] && [ -d "$SSH_DIR" ]; then rmdir "$SSH_DIR" 2>/dev/null || say "left $SSH_DIR (not empty on this machine)"; fi
    if [ -e "$STATE/made-run-sshd" ]; then rmdir /run/sshd 2>/dev/null || true; fi
    if [ -d "$STATE" ]; then
        if [ $failed -eq 0 ]; then rm -rf --one-file-system "$STATE"; else say "left $STATE (something above failed)"; fi
    fi
    [ $failed -eq 0 ] || die "down: not everything could be removed (see above)"
}

# MARK: status

status() {
    if [ ! -d "$STATE" ]; then
        echo "no test hosts"
        return 0
    fi
    echo "key: $KEY"
    echo "ssh.dir: $SSH_DIR"
    echo "bridge: $BRIDGE $SUBNET.1/24"
    local ns host link sshd pid
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" | sort -V); do
        host=${ns#"$PREFIX"-}
        link=$(ip -n "$ns" -o link show eth0 2>/dev/null | grep -q 'state UP\|,UP' && echo up || echo down)
        sshd=-
        if [ -s "$STATE/$host/sshd.pid" ]; then
            pid=$(cat "$STATE/$host/sshd.pid")
            if is_our_sshd "$pid" "$STATE/$host"; then sshd=$pid; else sshd="dead($pid)"; fi
        fi
        echo "host: $host $(host_address "$host") netns=$ns link=$link sshd=$sshd"
    done
}

# MARK: main

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
    up)
        [ $# -ge 1 ] || usage
        count=$1
        operator=no
        [ "${2:-}" = --operator ] && operator=yes
        up "$count" "$operator"
        ;;
    down) down ;;
    exec)
        [ $# -ge 2 ] || usage
        host=$(host_name "$1")
        shift
        require_root
        in_host "$host" "$@"
        ;;
    partition) [ $# -eq 1 ] || usage; require_root; link "$(host_name "$1")" down ;;
    heal) [ $# -eq 1 ] || usage; require_root; link "$(host_name "$1")" up ;;
    rekey) [ $# -eq 1 ] || usage; require_root; rekey "$(host_name "$1")" ;;
    status) status ;;
    *) usage ;;
esac
