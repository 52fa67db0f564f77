"""The run history: one pipeline_run row per run of a stage x window, done or failed,
beside the ledger row that holds the window's current state."""

from __future__ import annotations

import os
import socket
from datetime import datetime

import pytest

from pipeline import stages

from .contract import generate
from .test_stages import final_records, ingest_in_order, query

pytestmark = pytest.mark.usefixtures("pipeline_db")

WORKER = f"{socket.gethostname()}:{os.getpid()}"


@pytest.fixture
def ga_file(tmp_path):
    # 10 pages x 60 hours, all inside March 2024: one page window.
    generate(tmp_path, "--records", "600", "--pages", "10", "--start", "2024-03-01T00:00:00Z",
             "--sources", "ga")  # fmt: skip
    return tmp_path / "ga.json"


def expected_page_window(path) -> tuple[int, int]:
    """From the file alone: the (page, day) keys and the page-hours of its GA records."""
    ga, _psi = final_records([path])
    days = {(url, hour.date()) for url, hour in ga}
    return len(days), len(ga)


def runs(stage: str) -> list[tuple]:
    return query(
        "SELECT r.attempt, r.status, r.rows_in, r.rows_out, r.worker, r.task_id, r.error, "
        "r.started_at <= r.finished_at AND r.duration_ms >= 0 "
        "FROM pipeline_run r JOIN pipeline_ledger l ON l.id = r.ledger_id "
        "WHERE l.stage = %s ORDER BY r.attempt",
        [stage],
    )


def ledger(stage: str) -> tuple:
    [row] = query(
        "SELECT attempts, status, rows_in, rows_out FROM pipeline_ledger WHERE stage = %s",
        [stage],
    )
    return row


def test_two_runs_of_a_window_leave_two_history_rows_beside_one_ledger_row(ga_file):
    ingest_in_order([ga_file])
    records = len(final_records([ga_file])[0])
    stages.drain(("staged",))
    assert runs("staged") == [(1, "done", records, records, WORKER, None, None, True)]

    keys, page_hours = expected_page_window(ga_file)
    [start] = stages.dirty_windows("page")
    assert start == datetime.fromisoformat("2024-03-01T00:00:00+00:00")
    first = stages.run_window("page", start)
    assert (first.rows_in, first.rows_out) == (keys, page_hours)
    assert ledger("page") == (1, "done", keys, page_hours)

    # The window's keys marked again, as a re-run does: the same work a second time.
    assert (
        stages.mark_window_dirty("page", start, datetime(2024, 4, 1, tzinfo=start.tzinfo)) == keys
    )
    second = stages.run_window("page", start, task_id="task-of-the-second-run")
    assert (second.rows_in, second.rows_out) == (keys, page_hours)

    assert runs("page") == [
        (1, "done", keys, page_hours, WORKER, None, None, True),
        (2, "done", keys, page_hours, WORKER, "task-of-the-second-run", None, True),
    ]
    assert ledger("page") == (2, "done", keys, page_hours)  # the current state: the last run


def test_a_failed_run_keeps_its_history_row_with_its_error(ga_file):
    ingest_in_order([ga_file])
    stages.drain(("staged",))
    keys, page_hours = expected_page_window(ga_file)
    [start] = stages.dirty_windows("page")
    query("ALTER TABLE page_hour ADD CONSTRAINT no_rows CHECK (false) NOT VALID")
    try:
        with pytest.raises(Exception, match="no_rows"):
            stages.run_window("page", start, task_id="doomed")
    finally:
        query("ALTER TABLE page_hour DROP CONSTRAINT no_rows")
    [failed] = runs("page")
    attempt, status, rows_in, rows_out, worker, task_id, error, timed = failed
    assert (attempt, status, rows_in, rows_out, worker, task_id, timed) == (
        1, "failed", None, None, WORKER, "doomed", True,
    )  # fmt: skip
    assert error.startswith("CheckViolation") and "no_rows" in error
    assert ledger("page")[:2] == (1, "failed")

    stages.run_window("page", start)  # its keys were rolled back: the retry does the work
    assert [row[:4] for row in runs("page")] == [
        (1, "failed", None, None),
        (2, "done", keys, page_hours),
    ]
    assert ledger("page") == (2, "done", keys, page_hours)


def test_a_failed_staged_run_is_in_the_history_of_its_batch(ga_file):
    ingest_in_order([ga_file])
    query("ALTER TABLE staged_ga ADD CONSTRAINT no_rows CHECK (false) NOT VALID")
    try:
        [run] = stages.drain(("staged",))  # a failed batch is reported, not raised
        assert run.status == "failed" and "no_rows" in run.error
    finally:
        query("ALTER TABLE staged_ga DROP CONSTRAINT no_rows")
    [(batch_id, attempt, status, error)] = query(
        "SELECT l.batch_id, r.attempt, r.status, r.error FROM pipeline_run r "
        "JOIN pipeline_ledger l ON l.id = r.ledger_id WHERE l.stage = 'staged'"
    )
    assert query("SELECT id FROM ingest_batch") == [(batch_id,)]
    assert (attempt, status) == (1, "failed") and "no_rows" in error
