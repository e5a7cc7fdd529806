#!/usr/bin/env bash
# Makes sure the system packages pgcluster builds and tests with are installed:
# PostgreSQL 15 (server binaries), libpq-dev and pkg-config (the CLibPQ module),
# util-linux (setpriv, to run servers as their OS user when we are root; nsenter and
# unshare for the test hosts), docker-compose (validates rendered compose files; no
# engine needed), openssh-client (the ssh backend), openssh-server and iproute2 (the
# test hosts of scripts/test-hosts.sh), etcd-server (the etcd store's tests start a
# real etcd on loopback), pgbackrest (backups and the WAL archive), libcurl4-openssl-dev
# (the CCurl module: the etcd store's HTTP client, with TLS and client certificates),
# libssl-dev (the COpenSSL module: the cluster CA's certificates and SCRAM secrets with
# libcrypto; libpq-dev depends on it, so it is there whenever libpq-dev is).
# haproxy (the health endpoints' tests route through the rendered haproxy.cfg) and, when it
# can be installed, prometheus for promtool (the /metrics test checks the text with it, and
# skips with one line without it), logrotate (the rendered logrotate.conf is run by it in a test), pgbouncer (a hook re-points it).
# As root it installs what is missing with apt-get; otherwise it prints the command.
set -euo pipefail

# --build: only what building needs (make build, release, install, dist): libpq-dev,
# libssl-dev, libcurl4-openssl-dev and pkg-config beside the Swift toolchain, which apt does not install.
missing=()
[ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# The etcd store's HTTP client (the CCurl module) builds against libcurl.
pkg-config --exists libcurl 2>/dev/null || missing+=(libcurl4-openssl-dev)
# The cluster CA and SCRAM secrets (the COpenSSL module) build against libcrypto.
pkg-config --exists libcrypto 2>/dev/null || missing+=(libssl-dev)
if [ "${1:-}" = --build ]; then
  command -v "${SWIFT:-swift}" >/dev/null 2>&1 || { echo "the Swift toolchain is missing: see https://www.swift.org/install/linux/" >&2; exit 1; }
else
  [ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
  command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  # The ssh backend's client, and the test hosts (scripts/test-hosts.sh): sshd, ip.
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ -x /usr/bin/etcd ] || missing+=(etcd-server)
  # backup: in a spec: pgBackRest takes the backups and archives the WAL.
  command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  # A hook re-points a real PgBouncer in HookTests.
  [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  # The rendered logrotate.conf is tested with logrotate itself.
  command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
  # The .deb test (Tests/IntegrationTests/PackageTests.swift) debootstraps a root to install into.
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)

  # promtool is optional: install it where it can be, never fail for it.
  if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends prometheus >&2 2>/dev/null \
        || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends prometheus >&2; }; } \
      || echo "promtool not installable (Debian package prometheus): the /metrics test will skip its check" >&2
  fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
