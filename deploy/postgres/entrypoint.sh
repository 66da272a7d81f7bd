#!/bin/sh
# First start: a cluster in $PGDATA with POSTGRES_USER as its superuser (password from
# POSTGRES_PASSWORD, through a file: never on a command line) and POSTGRES_DB; then the server,
# reachable from the network with a password only.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | postgres --single -D "$PGDATA" postgres >/dev/null 2>&1
  fi
  echo "postgres-entrypoint: cluster created, database $db, superuser $user"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
