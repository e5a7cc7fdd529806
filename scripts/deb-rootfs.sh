#!/usr/bin/env bash
# Makes TARGET a minimal Debian bookworm root (debootstrap minbase, with libpq5, the one
# library pgcluster's .deb needs), for the test that installs the .deb into it
# (Tests/IntegrationTests/PackageTests.swift). The root is debootstrapped once and kept as
# a tarball in the cache scripts/compose-engine.sh uses (/var/cache/pgcluster-engine, or
# $PGCLUSTER_ENGINE_CACHE); later runs unpack it (seconds). Root only.
#
#   scripts/deb-rootfs.sh TARGET
set -euo pipefail

target="${1:?usage: $0 TARGET}"
[ "$(id -u)" -eq 0 ] || { echo "deb-rootfs: run as root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null 2>&1 || { echo "deb-rootfs: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

cache_dir="${PGCLUSTER_ENGINE_CACHE:-/var/cache/pgcluster-engine}"
# The recipe names the tarball: change it and a new one is made.
recipe="bookworm-minbase-libpq5"
tarball="$cache_dir/rootfs-$recipe.tar"

if [ ! -s "$tarball" ]; then
    mkdir -p "$cache_dir"
    work="$(mktemp -d /var/tmp/pgcluster-debroot-XXXXXX)"
    # shellcheck disable=SC2064
    trap "rm -rf '$work' '$work.log'" EXIT
    chmod 0755 "$work"
    mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    echo "deb-rootfs: debootstrap bookworm (minbase + libpq5) into $work, once; cached as $tarball" >&2
    debootstrap --variant=minbase --include=libpq5 bookworm "$work" "${mirror:-http://deb.debian.org/debian}" >"$work.log" 2>&1 \
        || { tail -n 20 "$work.log" >&2; echo "deb-rootfs: debootstrap failed (log above)" >&2; exit 1; }
    rm -rf "$work/var/cache/apt/archives/"*.deb
    tar -C "$work" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi

mkdir -p "$target"
chmod 0755 "$target"
tar -C "$target" -xf "$tarball"
