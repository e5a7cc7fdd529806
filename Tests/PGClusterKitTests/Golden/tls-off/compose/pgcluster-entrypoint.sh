#!/usr/bin/env bash
# Entrypoint of every node of the compose project of cluster compose, written by
# `pgcluster render`. Edit the cluster spec (compose.yaml) and render again rather than this file.
#
# On every start it
#  1. writes the replication passfile ($PASSFILE) that primary_conninfo names, owned by
#     the server's OS user, mode 0600: on every node, since any node may become a standby;
#     with TLS, copies the node's key from the read-only config mount (where it keeps the
#     host's owner) to $TLS_KEY_FILE, owned by the server's OS user, mode 0600, as
#     PostgreSQL demands; the certificate and the CA certificate are read in the mount;
#  2. when $PGDATA holds no cluster yet:
#     - primary: hands over to the image's docker-entrypoint.sh, which runs initdb and the
#       scripts in /docker-entrypoint-initdb.d/ (primary-init.sh: replication role, slots);
#     - standby: waits for the primary, clones it with pg_basebackup through its slot
#       (with TLS: sslmode=verify-full against the cluster CA), writes standby.signal and
#       makes the data directory private (0700);
#  3. runs the server as the server's OS user with the configuration in $POSTGRES_CONFIG_DIR,
#     as its child: signals to the container (stop, kill) go on to the server, and the
#     container ends with the server's exit status. One exception: a server stopped by
#     `hold` (a switchover: the old primary's clean stop) leaves the container running
#     until $HOLD_FILE is removed (then the server starts again, now set to follow the new
#     primary) or for at most 120 s (then the container ends). Stopping, reading the control
#     file and starting again inside the running container saves three container starts.
#
# It reads nothing but these environment variables, so it also runs outside a container:
#   PGDATA                data directory (required)
#   NODE_NAME             this node's name (application_name of the clone)
#   NODE_ROLE             primary | standby: what to do when $PGDATA is empty (default standby)
#   PRIMARY_HOST          where a standby clones from (required for a standby)
#   PRIMARY_PORT          (default 5432)
#   REPLICATION_USER      (default replicator)
#   REPLICATION_PASSWORD  (required to serve or clone; compose takes it from .env)
#   SLOT_NAME             physical slot the clone streams through; empty for none
#   POSTGRES_CONFIG_DIR   folder of postgresql.conf, pg_hba.conf and standby.conf (default /etc/pgcluster)
#   PASSFILE              (default /var/lib/postgresql/pgpass, the passfile that primary_conninfo names)
#   PG_BINDIR             folder of the PostgreSQL programs (default: found on PATH)
#   POSTGRES_OS_USER      the OS user the server runs as when this runs as root (default postgres)
#   TLS_SOURCE_DIR        with TLS: the folder of server.crt, server.key and ca.crt (the config
#                         mount's tls/); empty or unset: TLS is off
#   TLS_KEY_FILE          where the server's copy of the key goes (default /var/lib/postgresql/tls/server.key)
#   PRIMARY_WAIT_TRIES    how often to ask whether the primary accepts connections, about
#                         a second apart, before giving up (default 120)
#   PGCLUSTER_ENTRYPOINT_MODE
#                         serve (default): as above. follow: make the existing data a standby
#                         of PRIMARY_HOST (standby.signal, primary_conninfo and primary_slot_name
#                         in postgresql.auto.conf) and exit. clone: copy PRIMARY_HOST into the
#                         empty $PGDATA, set it to follow, and exit. pgcluster's switchover and
#                         rejoin run these in one-off containers while the server is down
#                         (follow in one without a network, given only the service's own
#                         variables: it needs no password).
#                         tls: copy the key into place (as on every start) and exit;
#                         `pgcluster tls rotate` runs it in the running container, then reloads.
#                         hold: stop the server cleanly but keep the container (see below);
#                         `pgcluster switchover` runs it in the running container.
#   PGCLUSTER_ENTRYPOINT_NO_EXEC
#                         1: start the server in the background with `pg_ctl -w start` and
#                         return once it accepts connections, instead of exec'ing it in the
#                         foreground (for tests); its log goes to PGCLUSTER_LOGFILE
#                         (default: postgres.log beside $PGDATA)
set -eu

: "${PGDATA:?PGDATA must name the data directory}"
NODE_NAME="${NODE_NAME:-${HOSTNAME:-node}}"
NODE_ROLE="${NODE_ROLE:-standby}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"
SLOT_NAME="${SLOT_NAME:-}"
POSTGRES_CONFIG_DIR="${POSTGRES_CONFIG_DIR:-/etc/pgcluster}"
PASSFILE="${PASSFILE:-/var/lib/postgresql/pgpass}"
POSTGRES_OS_USER="${POSTGRES_OS_USER:-postgres}"
PRIMARY_WAIT_TRIES="${PRIMARY_WAIT_TRIES:-120}"
HOLD_FILE="${PGCLUSTER_HOLD_FILE:-/run/pgcluster/hold}"
TLS_SOURCE_DIR="${TLS_SOURCE_DIR:-}"
TLS_KEY_FILE="${TLS_KEY_FILE:-/var/lib/postgresql/tls/server.key}"

# With TLS, how this node checks the server it streams or clones from: the cluster CA, and
# the upstream's name (PRIMARY_HOST, its service name) in the upstream's certificate.
tls_conninfo=""
tls_environment=()
if [ -n "$TLS_SOURCE_DIR" ]; then
  tls_conninfo=" sslmode=verify-full sslrootcert=$TLS_SOURCE_DIR/ca.crt"
  tls_environment=(PGSSLMODE=verify-full "PGSSLROOTCERT=$TLS_SOURCE_DIR/ca.crt")
fi

log() { echo "pgcluster-entrypoint ($NODE_NAME): $*" >&2; }

# The path of a PostgreSQL program: in PG_BINDIR when given, otherwise found on PATH.
pgbin() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR/$1"; else echo "$1"; fi
}

# PostgreSQL never runs as root: as root, run programs as the server's OS user (gosu in
# the official Debian image, su-exec in the Alpine one, setpriv elsewhere); as anyone
# else, run them as we are.
if [ "$(id -u)" = 0 ]; then
  server_uid="$(id -u "$POSTGRES_OS_USER")"
  server_gid="$(id -g "$POSTGRES_OS_USER")"
  if command -v gosu >/dev/null 2>&1; then
    run_as=(gosu "$POSTGRES_OS_USER")
  elif command -v su-exec >/dev/null 2>&1; then
    run_as=(su-exec "$POSTGRES_OS_USER")
  else
    run_as=(setpriv "--reuid=$server_uid" "--regid=$server_gid" --init-groups --)
  fi
else
  server_uid="$(id -u)"
  server_gid="$(id -g)"
  run_as=()
fi

as_server_user() { ${run_as[@]+"${run_as[@]}"} "$@"; }

# Gives files and folders (recursively) to the server's OS user; only root can and needs to.
give_to_server_user() {
  if [ "$(id -u)" = 0 ]; then chown -R "$server_uid:$server_gid" "$@"; fi
}

# libpq passfile line for the replication role on every host: *:*:*:user:password,
# with '\' and ':' escaped. Written to a temporary file first, so it is never half there.
write_passfile() {
  : "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set (compose takes it from .env)}"
  local escape='s/\\/\\\\/g; s/:/\\:/g'
  local user password tmp
  user="$(printf '%s' "$REPLICATION_USER" | sed "$escape")"
  password="$(printf '%s' "$REPLICATION_PASSWORD" | sed "$escape")"
  mkdir -p "$(dirname "$PASSFILE")"
  tmp="$PASSFILE.tmp.$$"
  (umask 077 && printf '*:*:*:%s:%s\n' "$user" "$password" >"$tmp")
  chmod 0600 "$tmp"
  give_to_server_user "$tmp"
  mv -f "$tmp" "$PASSFILE"
}

# With TLS, copies the node's key to $TLS_KEY_FILE (a temporary file first, so the server
# never reads half a key), owned by the server's OS user, mode 0600.
install_tls_key() {
  [ -n "$TLS_SOURCE_DIR" ] || return 0
  local source="$TLS_SOURCE_DIR/server.key" folder tmp
  if [ ! -r "$source" ]; then
    log "TLS is on but $source cannot be read: render the project again (pgcluster render)"
    exit 1
  fi
  folder="$(dirname "$TLS_KEY_FILE")"
  mkdir -p "$folder"
  give_to_server_user "$folder"
  chmod 0700 "$folder"
  tmp="$TLS_KEY_FILE.tmp.$$"
  (umask 077 && cat "$source" >"$tmp")
  chmod 0600 "$tmp"
  give_to_server_user "$tmp"
  mv -f "$tmp" "$TLS_KEY_FILE"
}

# Clones the primary into the empty $PGDATA and makes it a standby.
clone_primary() {
  : "${PRIMARY_HOST:?PRIMARY_HOST must name the primary a standby clones from}"
  mkdir -p "$PGDATA"
  if [ -n "$(ls -A "$PGDATA")" ]; then
    log "$PGDATA holds files but no cluster (an interrupted clone?); empty it to clone again"
    exit 1
  fi
  give_to_server_user "$PGDATA"
  chmod 0700 "$PGDATA"

  local tries=0
  until "$(pgbin pg_isready)" -q -t 2 -h "$PRIMARY_HOST" -p "$PRIMARY_PORT"; do
    tries=$((tries + 1))
    if [ "$tries" -ge "$PRIMARY_WAIT_TRIES" ]; then
      log "the primary $PRIMARY_HOST:$PRIMARY_PORT did not accept connections after $tries tries; giving up"
      exit 1
    fi
    sleep 1
  done

  local slot_args=()
  if [ -n "$SLOT_NAME" ]; then slot_args=(-S "$SLOT_NAME"); fi
  log "cloning $PRIMARY_HOST:$PRIMARY_PORT into $PGDATA${SLOT_NAME:+ through slot $SLOT_NAME}"
  as_server_user env PGPASSFILE="$PASSFILE" PGAPPNAME="pgcluster-clone-$NODE_NAME" ${tls_environment[@]+"${tls_environment[@]}"} \
    "$(pgbin pg_basebackup)" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" --no-password \
    -D "$PGDATA" -X stream -c fast ${slot_args[@]+"${slot_args[@]}"}
  # primary_conninfo and primary_slot_name come from standby.conf in the config folder.
  as_server_user touch "$PGDATA/standby.signal"
  give_to_server_user "$PGDATA"
  chmod 0700 "$PGDATA"
  log "cloned; starting as a standby"
}

# Points the data at PRIMARY_HOST: primary_conninfo and primary_slot_name in
# postgresql.auto.conf (it wins over standby.conf, which names the spec's first primary),
# and standby.signal.
write_follow_settings() {
  : "${PRIMARY_HOST:?PRIMARY_HOST must name the node to follow}"
  local auto="$PGDATA/postgresql.auto.conf" tmp="$PGDATA/postgresql.auto.conf.tmp.$$"
  {
    grep -v -E '^[[:space:]]*(primary_conninfo|primary_slot_name)[[:space:]]*=' "$auto" 2>/dev/null || true
    printf "primary_conninfo = 'host=%s port=%s user=%s application_name=%s passfile=%s connect_timeout=2%s'\n" \
      "$PRIMARY_HOST" "$PRIMARY_PORT" "$REPLICATION_USER" "$NODE_NAME" "$PASSFILE" "$tls_conninfo"
    if [ -n "$SLOT_NAME" ]; then printf "primary_slot_name = '%s'\n" "$SLOT_NAME"; fi
  } >"$tmp"
  chmod 0600 "$tmp"
  give_to_server_user "$tmp"
  mv -f "$tmp" "$auto"
  as_server_user touch "$PGDATA/standby.signal"
}

mode="${PGCLUSTER_ENTRYPOINT_MODE:-serve}"
# What each mode needs first: the server (serve) and the clone connect with the passfile,
# and the server needs its key; follow and hold touch no connection and no key.
case "$mode" in
serve | clone)
  write_passfile
  install_tls_key
  ;;
tls) install_tls_key ;;
follow | hold) ;;
*)
  log "PGCLUSTER_ENTRYPOINT_MODE must be serve, follow, clone, tls or hold, not '$mode'"
  exit 1
  ;;
esac

case "$mode" in
tls)
  if [ -n "$TLS_SOURCE_DIR" ]; then
    log "installed the TLS key in $TLS_KEY_FILE; the server reads it on its next reload"
  else
    log "TLS is off (no TLS_SOURCE_DIR): no key to install"
  fi
  exit 0
  ;;
follow)
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    log "follow: $PGDATA holds no cluster"
    exit 1
  fi
  write_follow_settings
  log "set to follow $PRIMARY_HOST:$PRIMARY_PORT on its next start"
  exit 0
  ;;
hold)
  supervisor="$(cat "$(dirname "$HOLD_FILE")/supervisor.pid" 2>/dev/null || true)"
  if [ -z "$supervisor" ] || ! kill -0 "$supervisor" 2>/dev/null; then
    log "hold: no supervisor runs the server here (a container started by an older entrypoint)"
    exit 3
  fi
  touch "$HOLD_FILE"
  if ! as_server_user "$(pgbin pg_ctl)" -D "$PGDATA" -m fast -w -t 120 stop; then
    rm -f "$HOLD_FILE"
    exit 1
  fi
  exit 0
  ;;
clone)
  if [ -s "$PGDATA/PG_VERSION" ]; then
    log "clone: $PGDATA already holds a cluster"
    exit 1
  fi
  clone_primary
  write_follow_settings
  exit 0
  ;;
esac

config_args=(-c "config_file=$POSTGRES_CONFIG_DIR/postgresql.conf" -c "hba_file=$POSTGRES_CONFIG_DIR/pg_hba.conf")

# The first start of the primary: the image's entrypoint runs initdb (with POSTGRES_USER
# and POSTGRES_PASSWORD) and /docker-entrypoint-initdb.d/ against a temporary server, then
# execs the server.
initialize=""
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  case "$NODE_ROLE" in
  primary)
    if ! command -v docker-entrypoint.sh >/dev/null 2>&1; then
      log "$PGDATA holds no cluster and there is no docker-entrypoint.sh here to create one"
      exit 1
    fi
    initialize=1
    ;;
  standby) clone_primary ;;
  *)
    log "NODE_ROLE must be primary or standby, not '$NODE_ROLE'"
    exit 1
    ;;
  esac
fi

if [ "${PGCLUSTER_ENTRYPOINT_NO_EXEC:-0}" = 1 ]; then
  logfile="${PGCLUSTER_LOGFILE:-$(dirname "$PGDATA")/postgres.log}"
  # pg_ctl hands -o to a shell: quote each setting.
  as_server_user "$(pgbin pg_ctl)" -D "$PGDATA" -l "$logfile" -w -t 60 \
    -o "-c 'config_file=$POSTGRES_CONFIG_DIR/postgresql.conf' -c 'hba_file=$POSTGRES_CONFIG_DIR/pg_hba.conf'" start
  exit 0
fi

# The server, as this script's child (see the top). Signals go on to it; `stopping` makes
# a signal end the container also while the server is held.
server=""
stopping=""
pass_on() {
  stopping=1
  if [ -n "$server" ]; then kill -"$1" "$server" 2>/dev/null || true; fi
}
trap 'pass_on INT' INT
trap 'pass_on TERM' TERM
trap 'pass_on QUIT' QUIT
mkdir -p "$(dirname "$HOLD_FILE")"
rm -f "$HOLD_FILE"
echo "$$" >"$(dirname "$HOLD_FILE")/supervisor.pid"
while :; do
  if [ -n "$initialize" ]; then
    docker-entrypoint.sh postgres "${config_args[@]}" "$@" &
    initialize=""
  else
    ${run_as[@]+"${run_as[@]}"} "$(pgbin postgres)" -D "$PGDATA" "${config_args[@]}" "$@" &
  fi
  server=$!
  # `wait` returns early when a signal comes in (the trap has passed it on): wait again.
  while kill -0 "$server" 2>/dev/null; do wait "$server" || true; done
  status=0
  wait "$server" || status=$?
  server=""
  if [ -n "$stopping" ] || [ ! -e "$HOLD_FILE" ]; then exit "$status"; fi
  log "the server stopped for a switchover; waiting to start it again"
  held=0
  while [ -e "$HOLD_FILE" ] && [ -z "$stopping" ] && [ "$held" -lt 1200 ]; do
    sleep 0.1
    held=$((held + 1))
  done
  if [ -n "$stopping" ] || [ -e "$HOLD_FILE" ]; then
    [ -n "$stopping" ] || log "held for 120 s and never released: ending the container"
    rm -f "$HOLD_FILE"
    exit 0
  fi
  log "released: starting the server again"
done
