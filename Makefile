# The README's commands. Each target does its own set-up (virtualenv,
# packages, services, database, migrations) and can be run again and again.
#   make demo   run the main job: generate, ingest, aggregate, report
#   make test   run the test suite against the real services

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv services migrate static setup browser demo stop test lint format bench-loadgen bench-ingest bench-pipeline bench-api bench-metrics tune-postgres clean api worker workers beat flower

help:
	@echo "make demo | stop | test | lint | format | bench-loadgen | bench-ingest | bench-pipeline | bench-api | services | migrate | static | browser | clean"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/services.sh

migrate: venv services
	$(PY) manage.py migrate --noinput -v0

# Hashed, compressed static files (admin, Swagger UI, ReDoc) for whitenoise.
static: venv
	$(PY) manage.py collectstatic --noinput -v0

setup: migrate static

# Debian's chromium for the browser tests, installed when missing.
browser:
	bash scripts/browser.sh

# Workers for every queue, beat and Flower in the background (pids in var/),
# then ingest, wait for the chain, report. `make stop` stops them.
demo: setup
	bash scripts/demo.sh

stop:
	bash scripts/processes.sh stop

test: lint setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# 13M GA + 13M PSI records written in parallel; RECORDS=... per source to scale.
bench-loadgen: venv
	$(PY) -m loadgen.bench $(if $(RECORDS),--records $(RECORDS))

# Ingestion: GA, PSI and both in parallel vs the server's own COPY; RECORDS=... per source.
bench-ingest: venv services
	$(PY) -m pipeline.ingest.bench $(if $(RECORDS),--records $(RECORDS)) $(if $(REPEAT),--repeat $(REPEAT)) $(if $(PSI_V5_RECORDS),--psi-v5-records $(PSI_V5_RECORDS))

# The stages over an ingested data set, then a 1% late batch; RECORDS=... per source.
bench-pipeline: venv services
	$(PY) -m pipeline.bench $(if $(RECORDS),--records $(RECORDS)) $(if $(WORKERS),--workers $(WORKERS))

# The API under wrk over a 2.6M-record data set (needs wrk: apt-get install wrk).
bench-api: venv services
	command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
	$(PY) -m reporting.bench $(if $(RECORDS),--records $(RECORDS))

# The time of a /metrics scrape over a year of ledger and run history (a scratch database).
bench-metrics: venv services
	$(PY) -m observability.bench

# Opt-in server settings for bulk loads (ALTER SYSTEM + restart): docs/benchmarks.md.
tune-postgres: services
	bash scripts/tune-postgres.sh

clean:
	rm -rf $(VENV) data var .pytest_cache .ruff_cache

# --- The platform's processes, for the local path (docker-compose runs the same commands).
QUEUE ?= staged
api: setup
	$(VENV)/bin/gunicorn metriflow.wsgi:application --config metriflow/gunicorn.conf.py

# Two processes per queue: windows of a stage touch disjoint rows and run side
# by side (docs/architecture.md, "The stages").
CONCURRENCY ?= 2
worker: migrate
	$(VENV)/bin/celery -A metriflow worker -Q $(QUEUE) -n $(QUEUE)@%h --concurrency $(CONCURRENCY) --loglevel INFO

# Every queue in one worker process: the whole chain on a development machine.
workers: migrate
	$(VENV)/bin/celery -A metriflow worker -Q raw,staged,page,interval,daily,monthly,yearly -n all@%h --concurrency 2 --loglevel INFO

beat: migrate
	mkdir -p var
	$(VENV)/bin/celery -A metriflow beat --loglevel INFO --schedule var/celerybeat-schedule

# Flower with the broker's queue depths, behind basic auth (metriflow/flowerconfig.py).
flower: venv
	$(VENV)/bin/celery -A metriflow flower --conf=metriflow/flowerconfig.py
