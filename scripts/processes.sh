#!/usr/bin/env bash
# The platform's background processes on this machine, for `make demo` and
# `make stop`: one Celery worker per stage queue, beat, Flower and the API.
# Each writes its pid to var/run/<name>.pid and its log to var/log/<name>.log.
#   bash scripts/processes.sh start     start what is not running yet
#   bash scripts/processes.sh stop      stop everything started here
#   bash scripts/processes.sh status    which are running
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
RUN=var/run
LOG=var/log
CONCURRENCY=${DEMO_CONCURRENCY:-2}
API_PORT=${DEMO_PORT:-8080}
FLOWER_PORT=${FLOWER_PORT:-5555}
mkdir -p "$RUN" "$LOG"

# The queues come from their one declaration, metriflow/celery.py.
queues() { $PY -c "from metriflow.celery import STAGES; print(' '.join(STAGES))"; }

alive() {  # name
  local pidfile="$RUN/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_alive() {  # name seconds
  for ((i = 0; i < $2 * 4; i++)); do
    alive "$1" && return 0
    sleep 0.25
  done
  echo "$1 did not start: see $LOG/$1.log" >&2
  return 1
}

start_one() {  # name command...
  local name=$1
  shift
  if alive "$name"; then
    echo "  $name already running (pid $(cat "$RUN/$name.pid"))"
    return
  fi
  rm -f "$RUN/$name.pid"
  "$@"
  wait_alive "$name" 30
  echo "  $name started (pid $(cat "$RUN/$name.pid"), log $LOG/$name.log)"
}

start_worker() {  # queue
  local q=$1
  start_one "worker-$q" .venv/bin/celery -A metriflow worker -Q "$q" -n "$q@%h" \
    --concurrency "$CONCURRENCY" --loglevel INFO --detach \
    --pidfile "$RUN/worker-$q.pid" --logfile "$LOG/worker-$q.log"
}

start_beat() {
  start_one beat .venv/bin/celery -A metriflow beat --loglevel INFO --detach \
    --schedule var/celerybeat-schedule --pidfile "$RUN/beat.pid" --logfile "$LOG/beat.log"
}

start_flower() {
  # Flower has no --detach: run it in the background and keep its pid.
  start_one flower sh -c "FLOWER_PORT=$FLOWER_PORT nohup .venv/bin/celery -A metriflow flower \
    --conf=metriflow/flowerconfig.py >'$LOG/flower.log' 2>&1 & echo \$! >'$RUN/flower.pid'"
}

start_api() {
  start_one api env GUNICORN_BIND="127.0.0.1:$API_PORT" GUNICORN_WORKERS="${GUNICORN_WORKERS:-2}" \
    GUNICORN_ACCESS_LOG="$LOG/api-access.log" .venv/bin/gunicorn metriflow.wsgi:application \
    --config metriflow/gunicorn.conf.py --daemon --pid "$RUN/api.pid" --error-logfile "$LOG/api.log"
}

stop_all() {
  local stopped=0
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    local name pid
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "  $name killed (pid $pid)"
      else echo "  $name stopped (pid $pid)"; fi
      stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
  done
  [ "$stopped" -gt 0 ] || echo "  nothing was running"
}

case "${1:-}" in
  start)
    for q in $(queues); do start_worker "$q"; done
    start_beat
    start_flower
    start_api
    ;;
  stop) stop_all ;;
  status)
    for pidfile in "$RUN"/*.pid; do
      [ -e "$pidfile" ] || { echo "  nothing was started"; break; }
      name=$(basename "$pidfile" .pid)
      if alive "$name"; then echo "  $name running (pid $(cat "$pidfile"))"; else echo "  $name not running"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
