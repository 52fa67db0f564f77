#!/usr/bin/env bash
# Makes sure PostgreSQL, RabbitMQ and Redis answer, starting each one that is
# installed locally but stopped, then creates the Metriflow database.
# Idempotent: run it as often as you like. Hosts and ports come from the same
# environment variables as the settings (see .env.example).
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGDATABASE_NAME=${METRIFLOW_DB_NAME:-metriflow}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}
AMQP_MANAGEMENT_PORT=${AMQP_MANAGEMENT_PORT:-15672}

log() { printf '[services] %s\n' "$*"; }

port_open() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # name seconds command...
  local name=$1 seconds=$2
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  log "$name did not answer within ${seconds}s" >&2
  return 1
}

postgres_ready() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null || port_open "$PGHOST" "$PGPORT"; }
redis_ready() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
  else
    port_open "$REDIS_HOST" "$REDIS_PORT"
  fi
}
rabbitmq_ready() { port_open "$AMQP_HOST" "$AMQP_PORT"; }

ensure_postgres() {
  if postgres_ready; then log "PostgreSQL answers on $PGHOST:$PGPORT"; return; fi
  log "PostgreSQL is down: starting it"
  if command -v pg_ctlcluster >/dev/null; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  elif command -v pg_ctl >/dev/null && [ -n "${PGDATA:-}" ]; then
    pg_ctl -D "$PGDATA" -l "${PGDATA}/server.log" start || true
  else
    log "no local PostgreSQL to start; set DATABASE_URL to a running server" >&2
    exit 1
  fi
  wait_for PostgreSQL 60 postgres_ready
  log "PostgreSQL started"
}

ensure_redis() {
  if redis_ready; then log "Redis answers on $REDIS_HOST:$REDIS_PORT"; return; fi
  log "Redis is down: starting it"
  if ! command -v redis-server >/dev/null; then
    log "no local redis-server to start; set REDIS_URL to a running server" >&2
    exit 1
  fi
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 30 redis_ready
  log "Redis started"
}

ensure_rabbitmq() {
  if rabbitmq_ready; then log "RabbitMQ answers on $AMQP_HOST:$AMQP_PORT"; return; fi
  log "RabbitMQ is down: starting it"
  if ! command -v rabbitmq-server >/dev/null; then
    log "no local rabbitmq-server to start; set CELERY_BROKER_URL to a running broker" >&2
    exit 1
  fi
  rabbitmq-server -detached || true
  wait_for RabbitMQ 120 rabbitmq_ready
  log "RabbitMQ started"
}

# The management plugin gives Flower (and people) the queues' depths.
ensure_rabbitmq_management() {
  if port_open "$AMQP_HOST" "$AMQP_MANAGEMENT_PORT"; then
    log "RabbitMQ management API answers on $AMQP_HOST:$AMQP_MANAGEMENT_PORT"; return
  fi
  if ! command -v rabbitmq-plugins >/dev/null; then
    log "RabbitMQ management API is off and rabbitmq-plugins is not here: Flower shows no queues" >&2
    return
  fi
  log "enabling RabbitMQ's management plugin"
  rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
  wait_for "RabbitMQ management" 60 port_open "$AMQP_HOST" "$AMQP_MANAGEMENT_PORT"
  log "RabbitMQ management API answers on $AMQP_HOST:$AMQP_MANAGEMENT_PORT"
}

ensure_database() {
  local exists
  exists=$(psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = '$PGDATABASE_NAME'")
  if [ "$exists" != "1" ]; then
    psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qc "CREATE DATABASE \"$PGDATABASE_NAME\""
    log "database $PGDATABASE_NAME created"
  else
    log "database $PGDATABASE_NAME exists"
  fi
}

ensure_postgres
ensure_redis
ensure_rabbitmq
ensure_rabbitmq_management
ensure_database
