#!/usr/bin/env bash
# Replication setup of the primary of cluster compose, written by `pgcluster render`.
# Edit the cluster spec (compose.yaml) and render again rather than this file.
#
# The official postgres image runs it once, from /docker-entrypoint-initdb.d/, right after
# initdb, against a temporary server that listens on the Unix socket only. It creates the
# replication role (LOGIN REPLICATION; password_encryption is scram-sha-256, so the
# password is stored as a SCRAM secret) and one physical slot per standby. Running
# it again changes nothing but the role's password.
#
# Environment: REPLICATION_PASSWORD (required), REPLICATION_USER (default replicator),
# POSTGRES_USER (the superuser, default postgres), PG_BINDIR (default: psql from PATH),
# and libpq's PGHOST/PGPORT/PGPASSWORD where the defaults do not reach the server.
set -eu

: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set (compose takes it from .env)}"
export REPLICATION_USER="${REPLICATION_USER:-replicator}"
psql="${PG_BINDIR:+$PG_BINDIR/}psql"

# The password travels from the environment into the server through psql's \getenv, so
# it never appears on a command line. Our postgresql.conf may already name synchronous
# standbys, which do not exist yet: a commit that waited for them would wait forever, so
# this session commits locally.
"$psql" -v ON_ERROR_STOP=1 --no-psqlrc --no-password --quiet \
  --username "${POSTGRES_USER:-postgres}" --dbname postgres >/dev/null <<'SQL'
\getenv replication_user REPLICATION_USER
\getenv replication_password REPLICATION_PASSWORD
SET synchronous_commit = local;
SELECT format(
         CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = :'replication_user')
              THEN 'ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L'
              ELSE 'CREATE ROLE %I WITH LOGIN REPLICATION PASSWORD %L' END,
         :'replication_user', :'replication_password') \gexec
SELECT pg_create_physical_replication_slot(slot)
  FROM unnest(ARRAY['pgcluster_db_1', 'pgcluster_db_2']) AS slot
 WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = slot);
SQL
echo "pgcluster: replication role ${REPLICATION_USER} ready, slots pgcluster_db_1, pgcluster_db_2" >&2
