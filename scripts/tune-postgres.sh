#!/usr/bin/env bash
# Opt-in: server settings for bulk loads (ALTER SYSTEM, then a restart of a
# local cluster). Bulk COPY and the set-based stages write a lot of WAL; with
# the defaults (max_wal_size 1GB, 128MB shared_buffers) checkpoints come every
# few seconds and every first touch of a page after one writes it whole.
# `make tune-postgres` runs this; `--reset` restores the defaults.
set -euo pipefail
PSQL=(psql -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}" -d postgres -qc)
shared_buffers=${METRIFLOW_PG_SHARED_BUFFERS:-2GB}
settings=(
  "shared_buffers=$shared_buffers"
  "max_wal_size=16GB"
  "checkpoint_timeout=30min"
  "wal_compression=lz4"
  "wal_buffers=64MB"
  "huge_pages=try"
)

# Huge pages (2 MB) for the shared buffers, where the kernel lets this script
# reserve them (root, /proc/sys writable): with gigabytes of shared buffers
# and 4 kB pages, every backend walks and faults its own page tables over
# them. 13M + 13M pipeline run: 200 s -> 192 s (docs/benchmarks.md).
# huge_pages=try: PostgreSQL falls back to normal pages when too few are free.
reserve_huge_pages() {
  local mb want
  case $shared_buffers in
    *GB) mb=$(( ${shared_buffers%GB} * 1024 )) ;;
    *MB) mb=${shared_buffers%MB} ;;
    *) return 0 ;;
  esac
  want=$(( mb * 11 / 20 + 100 ))  # shared buffers + 10%, in 2 MB pages, + WAL buffers
  if [ "${1:-}" = "--reset" ]; then
    want=0
  fi
  if ! (echo "$want" > /proc/sys/vm/nr_hugepages) 2>/dev/null; then
    echo "huge pages: /proc/sys/vm/nr_hugepages is not writable here; normal pages"
    return 0
  fi
  if [ "$want" -gt 0 ] && [ "$(cat /proc/sys/vm/nr_hugepages)" -lt "$want" ]; then
    # Memory too fragmented: compact it (and drop clean caches) and ask again.
    sync
    echo 1 > /proc/sys/vm/compact_memory 2>/dev/null || true
    echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    echo "$want" > /proc/sys/vm/nr_hugepages
  fi
  echo "huge pages: $(cat /proc/sys/vm/nr_hugepages) of $want reserved"
}
for setting in "${settings[@]}"; do
  name=${setting%%=*}
  if [ "${1:-}" = "--reset" ]; then
    "${PSQL[@]}" "ALTER SYSTEM RESET $name"
  else
    "${PSQL[@]}" "ALTER SYSTEM SET $name = '${setting#*=}'"
  fi
done
reserve_huge_pages "${1:-}"
if command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  echo "PostgreSQL restarted with: ${settings[*]}${1:+ (reset)}"
else
  echo "restart PostgreSQL to apply shared_buffers and wal_buffers"
fi
