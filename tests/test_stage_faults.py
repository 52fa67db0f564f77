"""A window that cannot run never stops the others.

Data at the ends of the supported time range (datetime's year 9999, and keys
beyond it already in the tables) is staged directly beside ordinary data
ingested from generated files. Every stage runs the far windows (open on the
SQL side at the ends of the range) as well as the ordinary ones; a window that
fails (made to fail here by a check constraint) is recorded failed with its
error while every other window and every later stage is done, and
``pipeline run`` exits non-zero naming it. The ordinary windows are compared
with the independent computation of tests/test_stages.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline import stages, tasks
from pipeline.models import TaskFailure

from .conftest import run_manage
from .processes import stop
from .rabbitmq import app_broker, fresh_vhost, queue_depth, queue_state
from .test_dead_letters import start_worker, wait_for
from .test_stages import FAULTS, assert_every_stage_matches, ingest_in_order, query

pytestmark = pytest.mark.usefixtures("pipeline_db")

FAR_URL = "https://far.example/end"
LEVELS = {  # table -> (its time column, the unit of its period)
    "page_hour": ("hour", "hour"),
    "agg_interval": ("period_start", "interval"),
    "agg_daily": ("period_start", "day"),
    "agg_monthly": ("period_start", "month"),
    "agg_yearly": ("period_start", "year"),
}


@pytest.fixture
def ordinary(tmp_path):
    """Ordinary GA and PSI files over a month and a year boundary, ingested."""
    from .contract import generate

    generate(tmp_path, "--records", "600", "--pages", "6", "--start", "2024-12-29T20:00:00Z",
             *FAULTS)  # fmt: skip
    paths = [tmp_path / "ga.json", tmp_path / "psi.json"]
    ingest_in_order(paths)
    return paths


def stage_far_record(hour: str, users: int = 7) -> None:
    """One GA page-hour at ``hour`` (timestamptz text, which may be beyond what Python
    represents) staged directly, as data already in the table, and its key marked
    dirty for the page stage."""
    [(batch_id,)] = query("SELECT min(id) FROM ingest_batch WHERE source = 'ga'")
    query("INSERT INTO site (host) VALUES ('far.example') ON CONFLICT DO NOTHING")
    query(
        "INSERT INTO page (site_id, url, path) SELECT id, %s, '/end' FROM site "
        "WHERE host = 'far.example' ON CONFLICT DO NOTHING",
        [FAR_URL],
    )
    query(
        "INSERT INTO staged_ga (hour, page_id, users, sessions, views, bounces, "
        "engagement_seconds, batch_id, position) "
        "SELECT %s::timestamptz, id, %s, 5, 9, 2, 30.5, %s, 1000000 FROM page WHERE url = %s",
        [hour, users, batch_id, FAR_URL],
    )
    # The same marks a rebuild of the whole range makes.
    stages.mark_window_dirty("page", stages.RANGE_START, stages.RANGE_END)


def far_rows() -> dict[str, list[tuple]]:
    """The far page's rows of every stage table, periods as text (they may lie beyond
    Python's datetime)."""
    out = {}
    for table, (column, _unit) in LEVELS.items():
        users = "users" if table == "page_hour" else "users, traffic_hours"
        out[table] = query(
            f"SELECT to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24 BC'), {users} "
            f"FROM {table} t JOIN page p ON p.id = t.page_id WHERE p.url = %s",
            [FAR_URL],
        )
    return out


def drop_far_data() -> None:
    """Removes the far page from every table, leaving exactly the ordinary data."""
    [(page_id,)] = query("SELECT id FROM page WHERE url = %s", [FAR_URL])
    for table in ("staged_ga", *LEVELS, "agg_site_daily", "pipeline_dirty"):
        column = "site_id" if table == "agg_site_daily" else "page_id"
        key = "(SELECT site_id FROM page WHERE id = %s)" if column == "site_id" else "%s"
        query(f"DELETE FROM {table} WHERE {column} = {key}", [page_id])


def expected_far_rows(hour: str) -> dict[str, list[tuple]]:
    """The far record's row at each level, its periods computed by PostgreSQL's own
    truncation of the hour (independent of the stages' window arithmetic)."""
    out = {}
    for table, (_column, unit) in LEVELS.items():
        period = (
            "date_bin('4 hours', %s::timestamptz, '2000-01-01 00:00+00')"
            if unit == "interval"
            else f"date_trunc('{unit}', %s::timestamptz, 'UTC')"
        )
        [(text,)] = query(
            f"SELECT to_char({period} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24 BC')", [hour]
        )
        out[table] = [(text, 7)] if table == "page_hour" else [(text, 7, 1)]
    return out


# Hours at and beyond the ends of datetime's range: December 9999 (the last window
# of every unit), a key past the year 9999 (a UTC hour of a PSI record measured on
# 9999-12-31 with a negative offset), the first hour of year 1 and an hour before it.
FAR_HOURS = ("9999-12-31 23:00+00", "10000-01-01 04:00+00", "0001-01-01 00:00+00",
             "0001-12-31 22:00+00 BC")  # fmt: skip


@pytest.mark.parametrize("hour", FAR_HOURS)
def test_windows_at_the_ends_of_the_range_run_beside_the_ordinary_ones(ordinary, hour):
    stage_far_record(hour)
    runs = stages.drain()

    assert {run.stage for run in runs} == set(stages.STAGES)
    assert [run for run in runs if run.status != "done"] == []
    assert query("SELECT stage, status FROM pipeline_ledger WHERE status <> 'done'") == []
    assert far_rows() == expected_far_rows(hour)
    # The edge windows are recorded with the ends of Python's range, readable from Python.
    ends = {end for (end,) in query("SELECT window_end FROM pipeline_ledger")}
    starts = {start for (start,) in query("SELECT window_start FROM pipeline_ledger")}
    if hour.startswith(("9999", "10000")):
        assert stages.RANGE_END in ends
    else:
        assert stages.RANGE_START in starts
    # Nothing is left to do, and the ordinary windows hold exactly the ordinary data.
    assert query("SELECT count(*) FROM pipeline_dirty") == [(0,)]
    drop_far_data()
    assert_every_stage_matches(ordinary)


def test_the_last_window_of_each_unit_ends_at_the_end_of_the_range():
    december = datetime(9999, 12, 1, tzinfo=UTC)
    assert stages._window_end(december, "month") == stages.RANGE_END
    assert stages._window_end(december.replace(month=1), "year") == stages.RANGE_END
    assert stages._window_end(datetime(9998, 12, 1, tzinfo=UTC), "month") == datetime(
        9999, 1, 1, tzinfo=UTC
    )
    assert stages.window_label(december, stages.RANGE_END) == "9999-12-01..end of range"


def forbid_far_page_hours() -> None:
    """Makes the page stage fail, non-transiently, on the far window only."""
    query(
        "ALTER TABLE page_hour ADD CONSTRAINT no_far_hours "
        "CHECK (hour < '9999-01-01 00:00+00') NOT VALID"
    )


def test_pipeline_run_finishes_everything_else_and_names_the_failed_window(
    ordinary, test_database_env
):
    stage_far_record("9999-12-31 23:00+00")
    forbid_far_page_hours()
    try:
        result = run_manage("pipeline", "run", env=test_database_env, check=False)
        status = run_manage("pipeline", "status", env=test_database_env).stdout
    finally:
        query("ALTER TABLE page_hour DROP CONSTRAINT no_far_hours")

    assert result.returncode != 0, result.stdout
    assert "failed: page 9999-12-01..end of range: CheckViolation" in result.stderr
    assert "no_far_hours" in result.stderr
    assert "1 window(s) failed, the others are done: page 9999-12-01..end of range" in (
        result.stderr
    )
    # Every stage ran after the failure: the table lists them all.
    for stage in stages.STAGES:
        assert any(line.startswith(f"{stage} ") for line in result.stdout.splitlines()), stage

    # The ledger and the run history keep the failure and its error ...
    [(status_, window_end, error)] = query(
        "SELECT status, window_end, error FROM pipeline_ledger WHERE status <> 'done'"
    )
    assert (status_, window_end) == ("failed", stages.RANGE_END)
    assert "no_far_hours" in error
    [(run_error,)] = query("SELECT error FROM pipeline_run WHERE status = 'failed'")
    assert run_error == error
    # ... `pipeline status` shows it, and its keys stay dirty for a rerun.
    [page_line] = [line for line in status.splitlines() if line.startswith("page ")]
    assert "failed=1" in page_line
    assert stages.dirty_windows("page") == [datetime(9999, 12, 1, tzinfo=UTC)]
    assert query("SELECT DISTINCT stage FROM pipeline_dirty") == [("page",)]

    # The rerun, once the fault is gone, does the far window and succeeds.
    rerun = run_manage("pipeline", "run", env=test_database_env, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert far_rows() == expected_far_rows("9999-12-31 23:00+00")
    drop_far_data()
    assert_every_stage_matches(ordinary)


def test_one_failing_window_does_not_stop_the_others_nor_the_later_stages(ordinary):
    # The daily window of December 2024 fails; January 2025's and every later
    # stage of it still run.
    query(
        "ALTER TABLE agg_daily ADD CONSTRAINT no_december "
        "CHECK (period_start >= '2025-01-01 00:00+00') NOT VALID"
    )
    try:
        runs = stages.drain()
    finally:
        query("ALTER TABLE agg_daily DROP CONSTRAINT no_december")

    failed = stages.failed_runs(runs)
    assert [(run.stage, run.window) for run in failed] == [("daily", "2024-12-01..2025-01-01")]
    assert "no_december" in failed[0].error
    done = {(run.stage, run.window) for run in runs if run.status == "done"}
    assert ("daily", "2025-01-01..2025-02-01") in done
    assert {("monthly", "2025-01-01..2026-01-01"), ("yearly", "2025-01-01..2026-01-01")} <= done
    assert query(
        "SELECT stage, window_start, status FROM pipeline_ledger WHERE status <> 'done'"
    ) == [("daily", datetime(2024, 12, 1, tzinfo=UTC), "failed")]
    months = {m for (m,) in query("SELECT DISTINCT period_start FROM agg_monthly")}
    assert months == {datetime(2025, 1, 1, tzinfo=UTC)}  # December's never reached monthly

    # A rerun recomputes the failed window and what follows it: all as if nothing failed.
    assert stages.failed_runs(stages.drain()) == []
    assert_every_stage_matches(ordinary)


def test_a_worker_dead_letters_the_failing_window_and_runs_the_others(
    ordinary, tmp_path, test_database_env, monkeypatch
):
    stages.drain(("staged",))
    stage_far_record("9999-12-31 23:00+00")
    starts = stages.dirty_windows("page")
    assert starts[-1] == datetime(9999, 12, 1, tzinfo=UTC) and len(starts) == 3
    forbid_far_page_hours()
    try:
        with fresh_vhost() as url, app_broker(url, monkeypatch):
            env = {**test_database_env, "CELERY_BROKER_URL": url}
            worker = start_worker(env, "page", tmp_path / "worker.log")
            try:
                wait_for(lambda: (queue_state(url, "page") or (0, 0))[1] >= 1, "the worker")
                # The far window first: a failure must not hold the others back.
                for start in reversed(starts):
                    tasks.WINDOW_TASKS["page"].si(window_start=start.isoformat()).apply_async()
                wait_for(lambda: queue_depth(url, "dead_letter") == 1, "one dead letter")
                wait_for(
                    lambda: (
                        query(
                            "SELECT count(*) FROM pipeline_ledger WHERE stage = 'page' "
                            "AND status = 'done'"
                        )
                        == [(2,)]
                    ),
                    "the ordinary windows done",
                )
                # Each done window handed its interval window on; the failed one did not.
                wait_for(lambda: queue_depth(url, "interval") == 2, "two interval windows")
            finally:
                stop(worker)
    finally:
        query("ALTER TABLE page_hour DROP CONSTRAINT no_far_hours")

    [(window_start, window_end, error)] = query(
        "SELECT window_start, window_end, error FROM pipeline_ledger "
        "WHERE stage = 'page' AND status = 'failed'"
    )
    assert (window_start, window_end) == (starts[-1], stages.RANGE_END)
    assert "no_far_hours" in error
    failure = TaskFailure.objects.get(task_name="pipeline.stage.page")
    assert failure.kwargs == {"window_start": starts[-1].isoformat()}
    assert "no_far_hours" in failure.error
    assert stages.dirty_windows("page") == [starts[-1]]
