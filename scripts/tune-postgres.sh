#!/usr/bin/env bash
# Opt-in: server settings for bulk loads (ALTER SYSTEM, then a restart of a
# local cluster). Bulk COPY and the set-based stages write a lot of WAL; with
# the defaults (max_wal_size 1GB, 128MB shared_buffers) checkpoints come every
# few seconds and every first touch of a page after one writes it whole.
# `make tune-postgres` runs this; `--reset` restores the defaults.
set -euo pipefail
PSQL=(psql -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}" -d postgres -qc)
settings=(
  "shared_buffers=${METRIFLOW_PG_SHARED_BUFFERS:-2GB}"
  "max_wal_size=16GB"
  "checkpoint_timeout=30min"
  "wal_compression=lz4"
  "wal_buffers=64MB"
)
for setting in "${settings[@]}"; do
  name=${setting%%=*}
  if [ "${1:-}" = "--reset" ]; then
    "${PSQL[@]}" "ALTER SYSTEM RESET $name"
  else
    "${PSQL[@]}" "ALTER SYSTEM SET $name = '${setting#*=}'"
  fi
done
if command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  echo "PostgreSQL restarted with: ${settings[*]}${1:+ (reset)}"
else
  echo "restart PostgreSQL to apply shared_buffers and wal_buffers"
fi
