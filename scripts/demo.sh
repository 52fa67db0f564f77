#!/usr/bin/env bash
# The main job, run by `make demo` after set-up (venv, services, migrations,
# static files): the platform as it runs in production, on this machine.
#   1. generate a small GA + PSI data set
#   2. start one Celery worker per stage queue, beat, Flower and the API in the
#      background (pids in var/run, logs in var/log; `make stop` stops them)
#   3. ingest it: each committed batch starts the Celery chain on RabbitMQ
#      (raw -> staged -> page -> interval -> daily -> monthly -> yearly),
#      and wait, showing progress, until the pipeline has nothing pending
#   4. ingest the late files the same way and wait again
#   5. print a report fetched over HTTP, and where each surface is
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
export METRIFLOW_PIPELINE_TRIGGER=true   # ingestion hands each batch to the chain
DATA=${METRIFLOW_DATA_DIR:-data}/demo
RECORDS=${DEMO_RECORDS:-48000}
PORT=${DEMO_PORT:-8080}
BASE="http://127.0.0.1:$PORT"
TIMEOUT=${DEMO_TIMEOUT:-900}

step() { printf '\n== %s\n' "$*"; }

step "1/5 generate $RECORDS GA + $RECORDS PSI records into $DATA"
$PY manage.py generate --out "$DATA" --records "$RECORDS" --pages 100 --sites 4 --seed 7 \
  --duplicates 0.01 --corrections 0.01 --late 0.01 --malformed 0.001

step "2/5 start the workers (one per queue), beat, Flower and the API"
bash scripts/processes.sh start
for _ in $(seq 1 60); do
  curl -fsS "$BASE/api/health" >/dev/null 2>&1 && break
  sleep 0.5
done

step "3/5 ingest; the chain runs on the workers"
# A malformed record is rejected with its position and reason (the admin lists
# them); the rest of the file loads. Nothing above the default reject rate fails.
$PY manage.py ingest "$DATA"/ga.json "$DATA"/psi.json
$PY manage.py pipeline wait --timeout "$TIMEOUT"

step "4/5 ingest the late files; only the windows they touch are recomputed"
$PY manage.py ingest "$DATA"/ga_late.json "$DATA"/psi_late.json
$PY manage.py pipeline wait --timeout "$TIMEOUT"
$PY manage.py pipeline status

step "5/5 report over HTTP"
read -r FIRST LAST < <($PY -c "import json,sys; m=json.load(open('$DATA/manifest.json')); \
print(m['hours']['first'], m['hours']['last'])")
TO=$($PY -c "from datetime import datetime, timedelta; \
print((datetime.fromisoformat('$LAST'.replace('Z', '+00:00')) + timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
# The demo user registers over HTTP, then is made an admin of every demo site
# (a user reads only the sites they are a member of; staff read all).
$PY scripts/demo_report.py register "$BASE" demo "${DEMO_PASSWORD:-metriflow-Demo-2024}"
for host in $($PY manage.py shell --no-imports -c \
    "from pipeline.models import Site; print(*Site.objects.values_list('host', flat=True))"); do
  $PY manage.py sites grant demo "$host" --role admin
done
$PY scripts/demo_report.py "$BASE" "$FIRST" "$TO" demo "${DEMO_PASSWORD:-metriflow-Demo-2024}"
# A staff account for the admin (users, pipeline runs), made once; its random
# password is kept in var/ (outside git). The API listens on 127.0.0.1 only.
if [ ! -s var/demo-admin-password ]; then
  $PY -c "import secrets; print(secrets.token_urlsafe(12))" > var/demo-admin-password
  chmod 600 var/demo-admin-password
  DJANGO_SUPERUSER_PASSWORD=$(cat var/demo-admin-password) $PY manage.py shell --no-imports -c "
from django.contrib.auth import get_user_model
import os
User = get_user_model()
user = User.objects.filter(username='demo-admin').first() or User(username='demo-admin')
user.is_staff = user.is_superuser = True
user.set_password(os.environ['DJANGO_SUPERUSER_PASSWORD'])
user.save()"
fi
ADMIN_PASSWORD=$(cat var/demo-admin-password)

cat <<TXT

Running in the background (bash scripts/processes.sh status; stop all with: make stop):
  Dashboard    $BASE/                 (log in as the demo user: demo / ${DEMO_PASSWORD:-metriflow-Demo-2024})
  Swagger UI   $BASE/api/docs/        (the API; Authorize with the access token of POST /api/auth/token)
  ReDoc        $BASE/api/redoc/
  Browsable    $BASE/api/reports/summary?from=$FIRST&to=$TO
               (log in at $BASE/api/auth/browser/login/?next=$($PY -c "from urllib.parse import quote; print(quote('/api/reports/summary?from=$FIRST&to=$TO', safe=''))"))
  Admin        $BASE/admin/           (staff user: demo-admin / $ADMIN_PASSWORD)
  Sites        $BASE/api/sites        (manage.py sites list; grant / revoke USERNAME HOST)
  Metrics      $BASE/metrics          (Prometheus; open to this machine under DEBUG, a bearer token in production)
  Health       $BASE/api/health/live and $BASE/api/health/ready
  Flower       http://127.0.0.1:${FLOWER_PORT:-5555}/   (basic auth: $(cat var/flower-credentials 2>/dev/null || echo "\$FLOWER_BASIC_AUTH"))
  Workers      one per queue: $($PY -c "from metriflow.celery import STAGES; print(' '.join(STAGES))") (logs in var/log/)
TXT
