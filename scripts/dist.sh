#!/usr/bin/env bash
# `make dist`: a release build with the Swift runtime linked in (--static-swift-stdlib;
# libpq stays a shared library, from Debian's libpq5), and dist/pgcluster_VERSION_ARCH.deb
# holding:
#   /usr/bin/pgcluster
#   /lib/systemd/system/pgcluster-watch@.service      (packaging/, hardened, Type=notify)
#   /usr/share/bash-completion/completions/pgcluster  (pgcluster --generate-completion-script bash)
#   /usr/share/zsh/vendor-completions/_pgcluster      (... zsh)
#   /usr/share/man/man1/pgcluster.1.gz                 (scripts/man-page.sh, from --help)
#   /usr/share/doc/pgcluster/examples/                 (the example specs)
# Needs the Swift toolchain, libpq-dev, pkg-config and dpkg-deb; not root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SWIFT="${SWIFT:-swift}"
say() { printf 'dist: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing (apt-get install dpkg)"
"$SWIFT" build -c release --static-swift-stdlib --product pgcluster
bin="$("$SWIFT" build -c release --static-swift-stdlib --show-bin-path)/pgcluster"
[ -x "$bin" ] || die "no binary at $bin"

# No Swift runtime library may be needed at run time; libpq must be (dynamically).
libraries="$(ldd "$bin")"
if grep -E 'libswift|libFoundation|libdispatch|libBlocksRuntime|lib_FoundationICU' <<<"$libraries"; then
    die "$bin still needs the Swift runtime (above): it was not linked with --static-swift-stdlib"
fi
grep -q 'libpq\.so' <<<"$libraries" || die "$bin does not link libpq dynamically"
if grep -q 'not found' <<<"$libraries"; then grep 'not found' <<<"$libraries" >&2; die "missing libraries"; fi

version="$("$bin" --version)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d "${TMPDIR:-/tmp}/pgcluster-dist-XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/pgcluster_${version}_${arch}"

install -D -m 0755 "$bin" "$root/usr/bin/pgcluster"
strip --strip-unneeded "$root/usr/bin/pgcluster" 2>/dev/null || true
install -D -m 0644 packaging/pgcluster-watch@.service "$root/lib/systemd/system/pgcluster-watch@.service"
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/man/man1" "$root/usr/share/doc/pgcluster/examples" "$root/DEBIAN"
"$bin" --generate-completion-script bash >"$root/usr/share/bash-completion/completions/pgcluster"
"$bin" --generate-completion-script zsh >"$root/usr/share/zsh/vendor-completions/_pgcluster"
scripts/man-page.sh "$bin" | gzip -9n >"$root/usr/share/man/man1/pgcluster.1.gz"
install -m 0644 examples/*.yaml "$root/usr/share/doc/pgcluster/examples/"
chmod 0644 "$root"/usr/share/bash-completion/completions/pgcluster "$root"/usr/share/zsh/vendor-completions/_pgcluster \
    "$root"/usr/share/man/man1/pgcluster.1.gz

# The packages of the libraries the binary names itself (NEEDED: libpq5, libc6, libstdc++6,
# libgcc-s1); theirs follow from their own packages.
depends="$(objdump -p "$bin" | awk '/NEEDED/ { print $2 }' | while read -r name; do
    lib="$(ldd "$bin" | awk -v n="$name" '$1 == n && $3 ~ /^\// { print $3 }')"
    if [ -n "$lib" ]; then dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true; fi
done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')"
[ -n "$depends" ] || depends="libc6, libpq5"

cat >"$root/DEBIAN/control" <<CONTROL
Package: pgcluster
Version: $version
Architecture: $arch
Maintainer: pgcluster <pgcluster@localhost>
Depends: $depends
Recommends: openssh-client
Suggests: postgresql, etcd-server
Section: database
Priority: optional
Installed-Size: $(du -sk "$root/usr" "$root/lib" | awk '{ s += $1 } END { print s }')
Description: build and operate a PostgreSQL streaming-replication cluster
 One YAML spec becomes a primary and its standbys (this machine, hosts over ssh, or
 compose), with quorum-synchronous replication, failover, switchover, rejoin and a
 watcher for automatic failover (the pgcluster-watch@ systemd unit).
CONTROL

# The watcher unit runs as postgres: make the user when PostgreSQL's packages did not.
cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd postgres >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home --shell /bin/sh postgres
    fi
    install -d -m 0750 -o postgres -g postgres /var/lib/pgcluster
    install -d -m 0755 /etc/pgcluster
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then systemctl daemon-reload || true; fi
fi
POSTINST
chmod 0755 "$root/DEBIAN/postinst"

mkdir -p dist
deb="dist/pgcluster_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1)); binary: $(du -h "$root/usr/bin/pgcluster" | cut -f1), needs: $depends"
