#!/usr/bin/env bash
# docker-entrypoint.sh of the local postgres:15 image that scripts/compose-engine.sh builds
# (no registry can be reached here, so the official image cannot be pulled). It does what the
# rendered compose project relies on from the official image, written for this project:
#  - as root: makes $PGDATA and the socket folder the postgres user's, then runs itself
#    again as that user (gosu);
#  - when $PGDATA holds no cluster: initdb with POSTGRES_USER / POSTGRES_PASSWORD (SCRAM),
#    a temporary server on the Unix socket only (with the arguments given, so the rendered
#    config_file and hba_file are used), the scripts in /docker-entrypoint-initdb.d/
#    (*.sh: run when executable, sourced otherwise; *.sql: psql), then a clean stop;
#  - then execs the server with the arguments given.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=peer --auth-host=scram-sha-256 -D "$PGDATA" ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  shift
  # The temporary server: our arguments (config_file, hba_file), no TCP.
  options="$(printf '%q ' "$@") -c listen_addresses='' -p ${PGPORT:-5432}"
  pg_ctl -D "$PGDATA" -o "$options" -w -t 60 start >/dev/null
  export PGHOST=/var/run/postgresql PGPORT="${PGPORT:-5432}" PGUSER="$POSTGRES_USER" PGDATABASE=postgres
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
    *.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
    *.sql) psql -v ON_ERROR_STOP=1 --no-psqlrc -f "$f" ;;
    *) echo "docker-entrypoint.sh: ignoring $f" >&2 ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  unset PGHOST PGUSER PGDATABASE
  echo "docker-entrypoint.sh: initdb done; starting the server" >&2
  set -- postgres "$@"
fi

exec "$@"
