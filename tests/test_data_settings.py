"""The settings that shape stored data (pipeline/datasettings.py): recorded by
``migrate``, and a worker, the API and the stages refusing a different value until
``manage.py pipeline reshape`` rebuilds the aggregates with it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.core.management import CommandError, call_command

from pipeline import datasettings, stages
from pipeline.catalog import HISTOGRAM
from pipeline.ingest.service import conninfo

from .conftest import REPO_ROOT, admin_conninfo, database_url, run_manage
from .contract import generate
from .processes import free_port, gunicorn, stop
from .rabbitmq import fresh_vhost, queue_state
from .test_stages import (  # noqa: F401 (data_settings_restored: a fixture)
    FAULTS,
    assert_every_stage_matches,
    data_settings_restored,
    ingest_in_order,
    query,
)

pytestmark = pytest.mark.usefixtures("pipeline_db")


def recorded(dbname: str) -> dict[str, str] | None:
    """pipeline_data_setting of ``dbname``; None when the table does not exist."""
    with psycopg.connect(admin_conninfo(dbname)) as conn:
        if conn.execute("SELECT to_regclass('pipeline_data_setting')").fetchone()[0] is None:
            return None
        return dict(conn.execute("SELECT name, value FROM pipeline_data_setting").fetchall())


def expected(interval_hours: int) -> dict[str, str]:
    return {"interval_hours": str(interval_hours), "histogram_base": repr(HISTOGRAM.base),
            "histogram_growth": repr(HISTOGRAM.growth)}  # fmt: skip


def other_length(hours: int) -> int:
    """An interval length the stages accept, other than ``hours``."""
    return next(n for n in (6, 3) if n != hours)


@pytest.mark.slow
def test_migrate_records_the_settings_once_and_again_when_the_table_is_built(scratch_database):
    env = {"DATABASE_URL": database_url(scratch_database), "METRIFLOW_INTERVAL_HOURS": "6"}
    # A database built before schema 0013 (with data in it), then upgraded: the
    # settings migrate runs with are recorded.
    run_manage("migrate", "pipeline", "0020_ingest_request", "--noinput", env=env)
    assert recorded(scratch_database) is None
    with psycopg.connect(admin_conninfo(scratch_database)) as conn:
        conn.execute("INSERT INTO site (host) VALUES ('before.example.com')")
    upgraded = run_manage("migrate", "--noinput", env=env)
    assert recorded(scratch_database) == expected(6)
    assert "Recorded the settings that shape data" in upgraded.stdout

    # Another migrate with another value keeps what the data was built with, and warns.
    again = run_manage("migrate", "--noinput", env={**env, "METRIFLOW_INTERVAL_HOURS": "3"})
    assert recorded(scratch_database) == expected(6)
    assert "interval_hours: built with 6, configured 3" in again.stdout

    # The table built again (migrated back and forth) records the values of that migrate.
    run_manage("migrate", "pipeline", "0020_ingest_request", "--noinput", env=env)
    assert recorded(scratch_database) is None
    run_manage("migrate", "--noinput", env={**env, "METRIFLOW_INTERVAL_HOURS": "3"})
    assert recorded(scratch_database) == expected(3)


# ------------------------------------------------------------------ refusing to start


def stored_length() -> int:
    [(value,)] = query("SELECT value FROM pipeline_data_setting WHERE name = 'interval_hours'")
    return int(value)


def start_worker(env: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", "interval",
         "-n", f"data-settings-{os.getpid()}-{free_port()}@%h", "--concurrency", "1",
         "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_worker_configured_with_another_interval_length_refuses_to_start(
    tmp_path, test_database_env
):
    built_with = stored_length()
    configured = other_length(built_with)
    log = tmp_path / "worker.log"
    # A vhost of its own: were the refusal to fail, the worker would declare its queues.
    with fresh_vhost() as url:
        worker = start_worker({**test_database_env, "CELERY_BROKER_URL": url,
                               "METRIFLOW_INTERVAL_HOURS": str(configured)}, log)  # fmt: skip
        try:
            status = worker.wait(timeout=120)
        finally:
            stop(worker)
    output = log.read_text()
    assert status != 0, output
    assert "the Celery worker refuses to start" in output
    assert f"interval_hours: built with {built_with}, configured {configured}" in output
    assert f"manage.py pipeline reshape --interval-hours {configured}" in output
    assert f"METRIFLOW_INTERVAL_HOURS={built_with}" in output  # or configure it back


def test_a_worker_starts_while_the_database_is_unreachable(tmp_path, test_database_env):
    # Nothing listens on a free port: the check at start is skipped, the worker consumes.
    unreachable = f"postgres://postgres@127.0.0.1:{free_port()}/metriflow"
    configured = other_length(stored_length())
    log = tmp_path / "worker.log"
    with fresh_vhost() as url:
        worker = start_worker({"DATABASE_URL": unreachable, "CELERY_BROKER_URL": url,
                               "METRIFLOW_INTERVAL_HOURS": str(configured)}, log)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while (queue_state(url, "interval") or (0, 0))[1] < 1:
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        finally:
            stop(worker)
    assert "the settings that shape data were not checked, the database is unreachable" in (
        log.read_text()
    )


def test_the_api_configured_with_another_interval_length_refuses_to_start(
    tmp_path, test_database_env
):
    built_with = stored_length()
    configured = other_length(built_with)
    env = {**test_database_env, "METRIFLOW_INTERVAL_HOURS": str(configured)}
    log_path = tmp_path / "gunicorn.log"
    with (
        open(log_path, "wb") as log,
        pytest.raises(AssertionError, match="ended with"),
        gunicorn(env, workers=1, log=log),
    ):
        pass  # not reached: gunicorn ended before it answered
    output = log_path.read_text()
    assert "the API refuses to start" in output
    assert f"interval_hours: built with {built_with}, configured {configured}" in output
    assert f"manage.py pipeline reshape --interval-hours {configured}" in output


def test_the_api_starts_while_the_database_is_unreachable(tmp_path):
    unreachable = f"postgres://postgres@127.0.0.1:{free_port()}/metriflow"
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log, gunicorn({"DATABASE_URL": unreachable}, workers=1, log=log):
        pass  # it answered /api/health
    assert "the settings that shape data were not checked" in log_path.read_text()


# ------------------------------------------------------------------ the stages and reshape


@pytest.fixture
def dataset(tmp_path):
    """Data over a month and a year boundary, with faults, and a late file."""
    generate(tmp_path, "--records", "1200", "--pages", "12", "--start", "2024-12-30T20:00:00Z",
             "--late", "0.05", *FAULTS)  # fmt: skip
    return tmp_path


@pytest.mark.usefixtures("data_settings_restored")
def test_reshape_rebuilds_every_level_for_a_new_interval_length(dataset, settings):
    files = [dataset / name for name in ("ga.json", "psi.json", "ga_late.json", "psi_late.json")]
    ingest_in_order(files[:2])
    stages.drain()
    built_with = stored_length()
    assert_every_stage_matches(files[:2], interval_hours=built_with)
    ingest_in_order(files[2:])  # late data, pending when the setting changes
    stages.drain(("staged", "page"))

    configured = other_length(built_with)
    settings.METRIFLOW_INTERVAL_HOURS = configured
    refusal = f"interval_hours: built with {built_with}, configured {configured}"
    # Neither `pipeline run` nor a window of the stages runs with the other value.
    with pytest.raises(CommandError, match=refusal):
        call_command("pipeline", "run", stdout=io.StringIO())
    window = stages.dirty_windows("interval")[0]
    before = query("SELECT count(*), min(period_start) FROM agg_interval")
    with pytest.raises(datasettings.DataSettingsMismatch, match=refusal):
        stages.run_window("interval", window)
    assert query("SELECT count(*), min(period_start) FROM agg_interval") == before
    # reshape takes only the configured value.
    with pytest.raises(CommandError, match="is not the configured METRIFLOW_INTERVAL_HOURS"):
        call_command("pipeline", "reshape", "--interval-hours", str(built_with))
    with pytest.raises(CommandError, match="does not divide a day"):
        call_command("pipeline", "reshape", "--interval-hours", "5")

    out = io.StringIO()
    call_command("pipeline", "reshape", "--interval-hours", str(configured), stdout=out)
    assert f"interval_hours {built_with} -> {configured}" in out.getvalue()
    assert stored_length() == configured
    datasettings.verify()
    assert_every_stage_matches(files, interval_hours=configured)
    assert not query("SELECT stage FROM pipeline_ledger WHERE status <> 'done'")


@pytest.mark.usefixtures("data_settings_restored")
def test_data_built_with_other_histogram_constants_is_refused_until_reshaped(dataset, settings):
    files = [dataset / "ga.json", dataset / "psi.json"]
    ingest_in_order(files)
    stages.drain(("staged", "page"))
    # The data says it was built with another growth than pipeline/catalog.py's.
    built_with = repr(HISTOGRAM.growth + 0.01)
    query("UPDATE pipeline_data_setting SET value = %s WHERE name = 'histogram_growth'",
          [built_with])  # fmt: skip
    refusal = f"histogram_growth: built with {built_with}, configured {HISTOGRAM.growth!r}"
    with pytest.raises(datasettings.DataSettingsMismatch, match=refusal) as refused:
        stages.run_window("interval", stages.dirty_windows("interval")[0])
    assert f"growth={built_with}) in pipeline/catalog.py" in str(refused.value)
    assert query("SELECT count(*) FROM agg_interval") == [(0,)]

    hours = settings.METRIFLOW_INTERVAL_HOURS
    call_command("pipeline", "reshape", "--interval-hours", str(hours), stdout=io.StringIO())
    assert recorded_here() == expected(hours)
    assert_every_stage_matches(files, interval_hours=hours)


def recorded_here() -> dict[str, str]:
    return dict(query("SELECT name, value FROM pipeline_data_setting"))


def waiting_on_a_lock(fragment: str) -> bool:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        return bool(conn.execute(
            "SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            [f"%{fragment}%"],
        ).fetchall())  # fmt: skip


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.usefixtures("data_settings_restored")
def test_a_window_waits_for_a_reshape_and_then_refuses_the_old_value(dataset, settings):
    ingest_in_order([dataset / "ga.json", dataset / "psi.json"])
    stages.drain(("staged", "page"))
    window = stages.dirty_windows("interval")[0]
    built_with = settings.METRIFLOW_INTERVAL_HOURS
    configured = other_length(built_with)
    # A reshape to another length holds the settings' rows while a window of a process
    # still configured with the old length starts: the window waits for it, then sees it.
    with psycopg.connect(conninfo()) as reshaping:
        datasettings.stored(reshaping, lock="update")
        reshaping.execute("UPDATE pipeline_data_setting SET value = %s "
                          "WHERE name = 'interval_hours'", [str(configured)])  # fmt: skip
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(stages.run_window, "interval", window)
            wait_until(lambda: waiting_on_a_lock("FOR SHARE"), "the window to wait")
            reshaping.commit()
            refusal = f"interval_hours: built with {configured}, configured {built_with}"
            with pytest.raises(datasettings.DataSettingsMismatch, match=refusal):
                run.result()
    assert query("SELECT count(*) FROM agg_interval") == [(0,)]
    [(status, error)] = query("SELECT status, error FROM pipeline_ledger WHERE stage = 'interval'")
    assert status == "failed" and "manage.py pipeline reshape" in error
