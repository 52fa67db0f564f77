"""End to end through real Celery workers on RabbitMQ: files in, the chain runs
on its own, and every stage ends equal to the independent computation; a
worker killed with SIGKILL in the middle of a stage only delays the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from django.db import connection

from metriflow.celery import STAGES, app

from .conftest import REPO_ROOT, admin_conninfo, run_manage
from .contract import generate
from .processes import stop
from .test_stages import FAULTS, assert_every_stage_matches, final_records, query

pytestmark = [pytest.mark.usefixtures("pipeline_db"), pytest.mark.slow]


@pytest.fixture
def pipeline_env(test_database_env):
    app.control.purge()  # messages left by other runs would name other databases' batches
    return {**test_database_env, "METRIFLOW_PIPELINE_TRIGGER": "true"}


def start_worker(env: dict, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", ",".join(STAGES),
         "-n", f"{name}-{os.getpid()}@%h", "--concurrency", "2", "--without-mingle",
         "--without-gossip", "--loglevel", "WARNING"],
        cwd=REPO_ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_until_settled(expected_batches: int, timeout: float = 120) -> None:
    """Every batch staged, no dirty key, no open ledger row, yearly written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_rows = query("SELECT count(*) FROM pipeline_ledger WHERE status <> 'done'")[0][0]
        staged = query("SELECT count(*) FROM pipeline_ledger WHERE stage = 'staged' "
                       "AND status = 'done'")[0][0]  # fmt: skip
        dirty = query("SELECT count(*) FROM pipeline_dirty")[0][0]
        yearly = query("SELECT count(*) FROM agg_yearly")[0][0]
        if staged == expected_batches and not open_rows and not dirty and yearly:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"pipeline did not settle: {query('SELECT stage, status, count(*) FROM pipeline_ledger GROUP BY 1, 2')}"  # noqa: E501
        f" dirty={query('SELECT stage, count(*) FROM pipeline_dirty GROUP BY 1')}"
    )


def test_ingest_then_the_chain_runs_through_every_queue(tmp_path, pipeline_env):
    generate(tmp_path, "--records", "2400", "--pages", "24", "--start", "2024-12-30T00:00:00Z",
             "--late", "0.05", *FAULTS)  # fmt: skip
    files = [tmp_path / n for n in ("ga.json", "psi.json", "ga_late.json", "psi_late.json")]
    worker = start_worker(pipeline_env, "e2e")
    try:
        run_manage("ingest", "--async", str(files[0]), str(files[1]), env=pipeline_env)
        wait_until_settled(2)
        run_manage("ingest", "--async", str(files[2]), env=pipeline_env)
        wait_until_settled(3)
        run_manage("ingest", "--async", str(files[3]), env=pipeline_env)
        wait_until_settled(4)
    finally:
        stop(worker)
    # Ingest order is the batch order: the late files came last.
    assert_every_stage_matches(files)
    ga, _psi = final_records(files)
    assert query("SELECT sum(users) FROM agg_yearly") == [(sum(r["users"] for r in ga.values()),)]
    stages_run = {s for (s,) in query("SELECT DISTINCT stage FROM pipeline_ledger")}
    assert stages_run == {"staged", "page", "interval", "daily", "monthly", "yearly"}


def test_a_worker_killed_mid_stage_only_delays_the_result(tmp_path, pipeline_env):
    generate(tmp_path, "--records", "2400", "--pages", "24", "--start", "2024-12-30T00:00:00Z",
             *FAULTS)  # fmt: skip
    files = [tmp_path / "ga.json", tmp_path / "psi.json"]
    # Hold the page stage inside its transaction: it waits on this lock mid-stage.
    blocker = psycopg.connect(admin_conninfo(connection.settings_dict["NAME"]))
    blocker.execute("LOCK TABLE page_hour IN SHARE MODE")
    worker = start_worker(pipeline_env, "doomed")
    try:
        run_manage("ingest", str(files[0]), str(files[1]), "--no-progress", env=pipeline_env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE '%%stage_page%%'")[0][0]  # fmt: skip
            if running:
                break
            time.sleep(0.2)
        assert running, "the page stage never reached the lock"
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        blocker.rollback()
        blocker.close()
        stop(worker)
    # The killed worker's message is redelivered (acks_late); its backend rolls
    # back once it notices the lost client; the sweep re-enqueues what is dirty.
    survivor = start_worker(pipeline_env, "survivor")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            app.send_task("pipeline.sweep")
            try:
                wait_until_settled(2, timeout=10)
                break
            except AssertionError:
                continue
        wait_until_settled(2, timeout=5)
    finally:
        stop(survivor)
    assert_every_stage_matches(files)


def test_a_task_that_fails_for_good_is_dead_lettered(pipeline_env):
    """A data error is not retried: the message is rejected to the dead-letter queue."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("dead_letter")
    worker = start_worker(pipeline_env, "dlq")
    try:
        result = app.send_task("pipeline.stage.staged", kwargs={"batch_id": 987654321})
        deadline = time.monotonic() + 60
        dead = []
        while time.monotonic() < deadline and not dead:
            with app.connection_for_write() as conn:
                message = conn.default_channel.basic_get("dead_letter", no_ack=True)
            if message is not None:
                dead.append(message)
            else:
                time.sleep(0.3)
    finally:
        stop(worker)
    assert dead, "the failed task never reached the dead-letter queue"
    assert dead[0].headers["id"] == result.id
