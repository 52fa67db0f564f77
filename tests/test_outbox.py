"""The hand-off between stages: a transactional outbox, once per window.

Each test builds what it uses: generated files, a RabbitMQ vhost of its own and,
where the broker is the point, real Celery workers on it. The stage tables are
compared with the independent computation of tests/test_stages.py and, where a
fault came first, with a clean run of the same files (whole tables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest

from metriflow.celery import STAGES
from pipeline import services, stages
from pipeline.ingest import ingest_file
from pipeline.ingest.service import conninfo

from .conftest import REPO_ROOT, reset_pipeline_tables, run_manage
from .contract import generate
from .processes import free_port, stop
from .rabbitmq import stage_broker, take_messages
from .test_dead_letters import wait_for
from .test_stages import (
    FAULTS,
    assert_every_stage_matches,
    ingest_in_order,
    query,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("pipeline_db")


# ----------------------------------------------------------------- helpers


def observe(sql: str, params=()) -> list[tuple]:
    """``sql`` on a connection of its own: what every other session sees."""
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


@contextmanager
def worker(env: dict, url: str, log_path, queues=STAGES, concurrency: int = 2):
    """A real Celery worker on ``queues`` of the broker at ``url``; stopped afterwards."""
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", ",".join(queues),
         "-n", f"outbox-{os.getpid()}-{free_port()}@%h", "--concurrency", str(concurrency),
         "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=REPO_ROOT, env={**os.environ, **env, "CELERY_BROKER_URL": url},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process
    finally:
        stop(process)
        log.close()


def settled(batches: int) -> bool:
    """Every batch staged, nothing queued, running or dirty, no hand-off unpublished."""
    [(staged, open_rows, dirty, unpublished)] = observe(
        "SELECT (SELECT count(*) FROM pipeline_ledger WHERE stage = 'staged' AND status = 'done'),"
        " (SELECT count(*) FROM pipeline_ledger WHERE status <> 'done'),"
        " (SELECT count(*) FROM pipeline_dirty),"
        " (SELECT count(*) FROM pipeline_outbox WHERE published_at IS NULL)"
    )
    return staged == batches and not open_rows and not dirty and not unpublished


def runs_per_window() -> Counter:
    """pipeline_run rows per (stage, window start), time stages only."""
    return Counter(
        {
            (stage, start): count
            for stage, start, count in query(
                "SELECT l.stage, l.window_start, count(*) FROM pipeline_run r "
                "JOIN pipeline_ledger l ON l.id = r.ledger_id WHERE l.stage <> 'staged' "
                "GROUP BY 1, 2"
            )
        }
    )


def month_windows(first: datetime, last: datetime) -> list[datetime]:
    months, month = [], first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while month <= last:
        months.append(month)
        month = month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)
    return months


def expected_windows(paths) -> dict[str, set[datetime]]:
    """The window starts each time stage must run for the data of ``paths`` (from the
    files' hours, independently of the ledger)."""
    from .test_stages import final_records

    ga, psi = final_records(paths)
    hours = [hour for (_url, hour) in ga] + [key[1] for key in psi]
    months = month_windows(min(hours), max(hours))
    years = sorted({m.replace(month=1) for m in months})
    return {"page": set(months), "interval": set(months), "daily": set(months),
            "monthly": set(years), "yearly": set(years)}  # fmt: skip


def clean_run_snapshot(paths) -> dict:
    """The stage tables of a clean run of ``paths`` (ingested in order, drained in
    process), the current tables' contents restored to nothing."""
    reset_pipeline_tables()
    ingest_in_order(paths)
    assert stages.failed_runs(stages.drain()) == []
    return snapshot()


def up_to_daily(tmp_path, records: str = "1200") -> list:
    """Files over a year boundary ingested and drained up to the daily stage: the
    monthly stage's keys are dirty, nothing is queued."""
    generate(tmp_path, "--records", records, "--pages", "4", "--start", "2024-12-20T00:00:00Z",
             *FAULTS)  # fmt: skip
    paths = [tmp_path / "ga.json", tmp_path / "psi.json"]
    ingest_in_order(paths)
    assert stages.failed_runs(stages.drain(("staged", "page", "interval", "daily"))) == []
    assert query("SELECT DISTINCT stage FROM pipeline_dirty") == [("monthly",)]
    return paths


# ----------------------------------------------------------------- tests


def test_the_hand_off_is_committed_with_the_batch_and_absent_when_it_rolls_back(tmp_path, settings):
    settings.METRIFLOW_PIPELINE_TRIGGER = True
    generate(tmp_path, "--records", "300", "--pages", "3", "--start", "2024-03-01T00:00:00Z")
    ga, psi = str(tmp_path / "ga.json"), str(tmp_path / "psi.json")

    loaded = ingest_file(ga)
    assert loaded.status == "loaded"
    assert observe(
        "SELECT o.task_name, o.batch_id, o.window_start, o.published_at, o.attempts, "
        "l.stage, l.status, l.queued_at IS NOT NULL "
        "FROM pipeline_outbox o JOIN pipeline_ledger l ON l.id = o.ledger_id"
    ) == [("pipeline.stage.staged", loaded.batch_id, None, None, 0, "staged", "queued", True)]

    # The batch's final transaction fails after its hand-off was written: both go.
    query(
        "CREATE FUNCTION test_refuse_hand_off() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'hand-off refused'; END $$"
    )
    query(
        "CREATE TRIGGER test_refuse_hand_off AFTER INSERT ON pipeline_outbox "
        "FOR EACH ROW EXECUTE FUNCTION test_refuse_hand_off()"
    )
    try:
        with pytest.raises(psycopg.Error, match="hand-off refused"):
            ingest_file(psi)
    finally:
        query("DROP TRIGGER test_refuse_hand_off ON pipeline_outbox")
        query("DROP FUNCTION test_refuse_hand_off()")
    [(psi_batch, status)] = observe("SELECT id, status FROM ingest_batch WHERE source = 'psi'")
    assert status == "loading"  # its end rolled back with the hand-off
    assert observe("SELECT count(*) FROM pipeline_ledger WHERE batch_id = %s", (psi_batch,)) == [
        (0,)
    ]
    assert observe("SELECT batch_id FROM pipeline_outbox") == [(loaded.batch_id,)]

    # The next run resumes the batch and commits its end and its hand-off together.
    resumed = ingest_file(psi)
    assert (resumed.batch_id, resumed.status) == (psi_batch, "loaded")
    assert observe(
        "SELECT o.batch_id, l.status FROM pipeline_outbox o "
        "JOIN pipeline_ledger l ON l.id = o.ledger_id ORDER BY o.id"
    ) == [(loaded.batch_id, "queued"), (psi_batch, "queued")]


def test_ingest_with_the_broker_down_warns_once_and_the_relay_publishes_it_later(
    tmp_path, test_database_env, monkeypatch
):
    generate(tmp_path, "--records", "2000", "--pages", "4", "--start", "2024-11-15T00:00:00Z",
             *FAULTS)  # fmt: skip
    path = tmp_path / "ga.json"
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}//"  # nothing listens there
    result = run_manage(
        "ingest", str(path), check=False,
        env={**test_database_env, "METRIFLOW_PIPELINE_TRIGGER": "true",
             "CELERY_BROKER_URL": closed},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert " loaded, " in result.stdout
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, result.stderr
    assert "broker unreachable" in warnings[0] and "Connection refused" in warnings[0]
    # Committed and waiting: the batch, its queued ledger row, its unpublished message.
    [(batch_id,)] = query("SELECT id FROM ingest_batch WHERE status = 'loaded'")
    assert query(
        "SELECT o.batch_id, o.published_at, o.attempts, l.status FROM pipeline_outbox o "
        "JOIN pipeline_ledger l ON l.id = o.ledger_id"
    ) == [(batch_id, None, 1, "queued")]
    assert query("SELECT error FROM pipeline_outbox")[0][0].endswith("Connection refused")

    with stage_broker(monkeypatch) as url, worker(test_database_env, url, tmp_path / "worker.log"):
        assert services.relay_outbox() == services.Relayed(1)  # the broker is back
        wait_for(lambda: settled(1), "the chain to finish", timeout=180)
    [(published, attempts, task_id)] = query(
        "SELECT published_at IS NOT NULL, attempts, task_id FROM pipeline_outbox "
        "WHERE batch_id = %s",
        (batch_id,),
    )
    assert (published, attempts) == (True, 2)
    assert query("SELECT task_id FROM pipeline_run r JOIN pipeline_ledger l "
                 "ON l.id = r.ledger_id WHERE l.stage = 'staged'") == [(task_id,)]  # fmt: skip
    assert_every_stage_matches([path])
    after_fault = snapshot()
    assert clean_run_snapshot([path]) == after_fault


def test_relays_at_once_publish_each_hand_off_once(monkeypatch):
    def queue_months(first: str, count: int) -> None:
        query(
            "SELECT pipeline_enqueue('page', NULL, m AT TIME ZONE 'UTC', "
            "(m + interval '1 month') AT TIME ZONE 'UTC') "
            "FROM generate_series(%s::timestamp, %s::timestamp + (%s - 1) * interval '1 month', "
            "interval '1 month') AS m",
            (first, first, count),
        )

    queue_months("2000-01-01", 300)
    assert query("SELECT count(*), count(DISTINCT ledger_id) FROM pipeline_outbox") == [(300, 300)]
    with stage_broker(monkeypatch) as url:
        # Rows another relay holds are skipped, not waited for nor published twice.
        with psycopg.connect(conninfo()) as holder:
            held = [
                row_id
                for (row_id,) in holder.execute(
                    "SELECT id FROM pipeline_outbox ORDER BY id LIMIT 120 FOR UPDATE"
                ).fetchall()
            ]
            assert services.relay_outbox() == services.Relayed(180)
            assert observe("SELECT id FROM pipeline_outbox WHERE published_at IS NULL "
                           "ORDER BY id") == [(i,) for i in held]  # fmt: skip
        # Two relays started together over what is left and 300 more.
        queue_months("2030-01-01", 300)
        start = threading.Barrier(2)
        results: list = []

        def relay() -> None:
            start.wait()
            results.append(services.relay_outbox())

        threads = [threading.Thread(target=relay) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(r.published for r in results) == 420
        assert all(r.error is None for r in results)

        messages = take_messages(url, "page")
    rows = query("SELECT task_id, window_start, published_at IS NOT NULL FROM pipeline_outbox")
    assert len(rows) == 600 and all(published for _, _, published in rows)
    sent = Counter(message.headers["id"] for message in messages)
    assert len(messages) == 600 and set(sent.values()) == {1}
    assert set(sent) == {task_id for task_id, _, _ in rows}
    windows = {message.headers["id"]: json.loads(message.body)[1]["window_start"]
               for message in messages}  # fmt: skip
    assert windows == {task_id: start.astimezone(UTC).isoformat() for task_id, start, _ in rows}


def test_each_window_runs_once_per_wave_of_a_multi_month_file(
    tmp_path, test_database_env, monkeypatch
):
    generate(tmp_path, "--records", "20000", "--pages", "2", "--start", "2024-06-01T00:00:00Z",
             *FAULTS)  # fmt: skip
    paths = [tmp_path / "ga.json", tmp_path / "psi.json"]
    env = {**test_database_env, "METRIFLOW_PIPELINE_TRIGGER": "true"}
    with stage_broker(monkeypatch) as url, worker(test_database_env, url, tmp_path / "worker.log"):
        for wave, path in enumerate(paths, start=1):
            run_manage("ingest", str(path), env={**env, "CELERY_BROKER_URL": url})
            wait_for(lambda n=wave: settled(n), f"wave {wave} to finish", timeout=300)
            expected = expected_windows(paths[:wave])
            runs = runs_per_window()
            for stage in stages.TIME_STAGES:
                counts = {start: n for (s, start), n in runs.items() if s == stage}
                assert set(counts) == expected[stage], stage
                assert set(counts.values()) == {wave}, (stage, counts)
    assert len(expected["page"]) >= 12 and len(expected["yearly"]) == 2
    assert_every_stage_matches(paths)
    after_waves = snapshot()
    assert clean_run_snapshot(paths) == after_waves


def test_other_sessions_see_queued_then_running_while_a_stage_is_held(
    tmp_path, test_database_env, monkeypatch
):
    paths = up_to_daily(tmp_path)
    years = [datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)]
    assert stages.sweep() == {"stale": 0, "batches": 0, "windows": 2}
    assert observe(
        "SELECT window_start, status FROM pipeline_ledger WHERE stage = 'monthly' ORDER BY 1"
    ) == [(year, "queued") for year in years]

    holder = psycopg.connect(conninfo())  # the monthly stage waits for this lock
    holder.execute("LOCK TABLE agg_monthly IN ACCESS EXCLUSIVE MODE")
    try:
        with (
            stage_broker(monkeypatch) as url,
            worker(
                test_database_env, url, tmp_path / "worker.log", ("monthly", "yearly"), 1
            ) as process,
        ):
            assert services.relay_outbox() == services.Relayed(2)

            def running() -> list[tuple]:
                return observe(
                    "SELECT window_start, worker, started_at IS NOT NULL FROM pipeline_ledger "
                    "WHERE stage = 'monthly' AND status = 'running'"
                )

            wait_for(running, "a monthly window shown running")
            [(_start, by, started)] = running()
            pid = int(by.rsplit(":", 1)[1])
            assert started and pid not in (os.getpid(), process.pid)  # a pool process
            # Still held: still running, seen from yet another session.
            assert observe("SELECT status FROM pipeline_ledger WHERE stage = 'monthly' "
                           "AND worker = %s", (by,)) == [("running",)]  # fmt: skip
            holder.rollback()
            wait_for(lambda: settled(2), "the chain to finish", timeout=120)
    finally:
        holder.close()
    assert_every_stage_matches(paths)
    runs = runs_per_window()
    assert {key: n for key, n in runs.items() if key[0] in ("monthly", "yearly")} == {
        (stage, year): 1 for stage in ("monthly", "yearly") for year in years
    }


def test_a_window_left_running_by_a_killed_run_is_queued_again_by_the_sweep(
    tmp_path, test_database_env, monkeypatch, settings
):
    paths = up_to_daily(tmp_path)
    holder = psycopg.connect(conninfo())
    holder.execute("LOCK TABLE agg_monthly IN ACCESS EXCLUSIVE MODE")
    run = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "manage.py"), "pipeline", "run", "--stage", "monthly"],
        cwd=REPO_ROOT, env={**os.environ, **test_database_env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: observe("SELECT count(*) FROM pipeline_ledger WHERE stage = 'monthly' "
                            "AND status = 'running' AND worker LIKE %s",
                            (f"%:{run.pid}",)) == [(2,)],
            "both monthly windows running",
        )  # fmt: skip
        run.kill()
        run.wait()
    finally:
        stop(run)
        holder.rollback()
        holder.close()
    # The killed run's backend went with it (its transaction rolled back, its locks
    # freed); its claim, written outside that transaction, stays.
    wait_for(
        lambda: observe("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE %s AND pid <> pg_backend_pid()",
                        ("%stage_monthly%",)) == [(0,)],
        "the killed run's backend to end",
    )  # fmt: skip
    left = "SELECT status, count(*) FROM pipeline_ledger WHERE stage = 'monthly' GROUP BY 1"
    assert query(left) == [("running", 2)]

    settings.CELERY_TASK_TIME_LIMIT = 3600  # not past its limit: left alone
    assert stages.sweep() == {"stale": 0, "batches": 0, "windows": 0}
    assert query(left) == [("running", 2)]

    settings.CELERY_TASK_TIME_LIMIT = 1
    wait_for(
        lambda: observe("SELECT bool_and(started_at < now() - interval '1 second') "
                        "FROM pipeline_ledger WHERE stage = 'monthly'") == [(True,)],
        "the runs to be past their limit",
    )  # fmt: skip
    assert stages.sweep() == {"stale": 2, "batches": 0, "windows": 0}
    assert query(left) == [("queued", 2)]
    with stage_broker(monkeypatch) as url, worker(test_database_env, url, tmp_path / "worker.log"):
        assert services.relay_outbox() == services.Relayed(2)
        wait_for(lambda: settled(2), "the chain to finish", timeout=120)
    assert query(
        "SELECT l.attempts, r.attempt, r.status FROM pipeline_ledger l "
        "JOIN pipeline_run r ON r.ledger_id = l.id WHERE l.stage = 'monthly'"
    ) == [(2, 2, "done"), (2, 2, "done")]  # the killed attempt left no run row
    assert_every_stage_matches(paths)
    after_fault = snapshot()
    assert clean_run_snapshot(paths) == after_fault


def test_the_admin_filters_queued_windows_and_waiting_hand_offs(tmp_path, settings, client):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    settings.METRIFLOW_PIPELINE_TRIGGER = True
    generate(tmp_path, "--records", "100", "--pages", "2", "--start", "2024-03-01T00:00:00Z")
    batch_id = ingest_file(str(tmp_path / "ga.json")).batch_id
    user = get_user_model().objects.create_user("ops", password="x", is_staff=True,
                                                is_superuser=True)  # fmt: skip
    client.force_login(user)
    ledger = reverse("admin:pipeline_pipelineledger_changelist")
    outbox = reverse("admin:pipeline_pipelineoutbox_changelist")
    assert f"batch {batch_id}" in client.get(ledger, {"status__exact": "queued"}).content.decode()
    assert f"batch {batch_id}" not in client.get(ledger, {"status__exact": "done"}).content.decode()

    def rows(params: dict) -> int:
        response = client.get(outbox, params)
        assert response.status_code == 200
        return response.content.decode().count('class="field-task_name"')

    assert (rows({"published": "no"}), rows({"published": "yes"})) == (1, 0)


def test_a_window_dirtied_while_running_is_queued_again_when_it_finishes(
    tmp_path, test_database_env, monkeypatch
):
    paths = up_to_daily(tmp_path)
    assert stages.sweep()["windows"] == 2  # both monthly windows queued
    holder = psycopg.connect(conninfo())
    holder.execute("LOCK TABLE agg_monthly IN ACCESS EXCLUSIVE MODE")
    try:
        with (
            stage_broker(monkeypatch) as url,
            worker(test_database_env, url, tmp_path / "worker.log", ("monthly", "yearly"), 1),
        ):
            assert services.relay_outbox() == services.Relayed(2)
            running = (
                "SELECT window_start FROM pipeline_ledger "
                "WHERE stage = 'monthly' AND status = 'running'"
            )
            wait_for(lambda: observe(running), "a monthly window running")
            [(start,)] = observe(running)
            # A key of its window, marked after the run took its keys (a month without
            # data: its recomputation writes nothing).
            query(
                "INSERT INTO pipeline_dirty (stage, period_start, page_id) "
                "SELECT 'monthly', %s::timestamptz + interval '1 month', min(id) FROM page",
                (start,),
            )
            # Not queued twice while it runs...
            assert stages.sweep()["windows"] == 0
            assert observe(
                "SELECT status, (SELECT count(*) FROM pipeline_outbox o WHERE o.ledger_id = l.id "
                "AND o.published_at IS NULL) FROM pipeline_ledger l "
                "WHERE stage = 'monthly' AND window_start = %s",
                (start,),
            ) == [("running", 0)]
            holder.rollback()
            # ...and queued again by its own end: the key is not lost.
            wait_for(lambda: settled(2), "the chain to finish", timeout=120)
    finally:
        holder.close()
    assert query(
        "SELECT r.rows_in FROM pipeline_run r JOIN pipeline_ledger l ON l.id = r.ledger_id "
        "WHERE l.stage = 'monthly' AND l.window_start = %s ORDER BY r.attempt",
        (start,),
    )[-1] == (1,)
    assert runs_per_window()[("monthly", start)] == 2
    assert_every_stage_matches(paths)
