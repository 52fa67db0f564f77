"""``manage.py ingest --async``: a file queued on the raw queue is pending work that
``pipeline wait``, ``pipeline status`` and the lag see until a worker has ingested it,
on a vhost of the test's own."""

from __future__ import annotations

import re

import pytest
from django.db import connection

from pipeline.selectors import pipeline_lag

from .conftest import run_manage
from .contract import generate
from .rabbitmq import queue_depth, stage_broker
from .test_outbox import observe, worker
from .test_stages import FAULTS, assert_every_stage_matches

pytestmark = [pytest.mark.usefixtures("pipeline_db"), pytest.mark.slow]


def test_a_queued_ingest_is_pending_until_a_worker_ingested_it(
    tmp_path, test_database_env, monkeypatch
):
    generate(tmp_path, "--records", "1200", "--pages", "4", "--start", "2024-11-15T00:00:00Z",
             *FAULTS)  # fmt: skip
    path = tmp_path / "ga.json"
    with stage_broker(monkeypatch) as url:
        env = {**test_database_env, "CELERY_BROKER_URL": url,
               "METRIFLOW_PIPELINE_TRIGGER": "true"}  # fmt: skip
        queued = run_manage("ingest", "--async", str(path), env=env)
        [task_id] = re.fullmatch(rf"{re.escape(str(path))}: queued on 'raw' \(task (\S+)\)\n",
                                 queued.stdout).groups()  # fmt: skip
        # No worker consumes: the broker holds the message, the database the request.
        assert queue_depth(url, "raw") == 1
        assert observe("SELECT task_id, file_name, status FROM ingest_request") == [
            (task_id, str(path), "queued")
        ]

        waited = run_manage("pipeline", "wait", "--timeout", "3", env=env, check=False)
        assert waited.returncode == 1
        assert "nothing pending" not in waited.stdout
        assert "still pending after 3 s: 1 file(s) queued for ingestion (0 being read): " \
               f"{path}" in waited.stderr  # fmt: skip

        status = run_manage("pipeline", "status", env=env)
        [raw_line] = [line for line in status.stdout.splitlines() if line.startswith("raw ")]
        assert "queued=1" in raw_line

        with connection.cursor() as cursor:
            lag = pipeline_lag(cursor)
        assert set(lag.stages) == {"raw"} and lag.behind == "raw"

        # A worker takes it: the file is ingested, the chain runs, and waiting settles.
        with worker(env, url, tmp_path / "worker.log"):
            settled = run_manage("pipeline", "wait", "--timeout", "240", env=env, check=False)
        assert settled.returncode == 0, settled.stdout + settled.stderr
        assert settled.stdout.splitlines()[-1] == "nothing pending: every stage is up to date"
        assert queue_depth(url, "raw") == 0

    [(batch_id,)] = observe("SELECT id FROM ingest_batch WHERE status = 'loaded'")
    assert observe("SELECT status, batch_id, outcome FROM ingest_request") == [
        ("done", batch_id, "loaded")
    ]
    assert_every_stage_matches([path])
    with connection.cursor() as cursor:
        assert pipeline_lag(cursor).stages == {}


def test_a_queued_file_that_fails_for_good_is_no_longer_pending(
    tmp_path, test_database_env, monkeypatch
):
    generate(tmp_path, "--records", "200", "--pages", "2")
    path = tmp_path / "ga.json"
    with stage_broker(monkeypatch) as url:
        env = {**test_database_env, "CELERY_BROKER_URL": url}
        run_manage("ingest", "--async", str(path), env=env)
        path.unlink()  # gone before a worker reads it
        with worker(env, url, tmp_path / "worker.log"):
            waited = run_manage("pipeline", "wait", "--timeout", "120", env=env, check=False)
        assert waited.returncode == 0, waited.stdout + waited.stderr
    [(status, error)] = observe("SELECT status, error FROM ingest_request")
    assert status == "failed" and "no such file" in error
