"""Late data by deltas: a changed page-hour adds its new contribution and takes away
its old one at every level above it (sql/functions/stages.sql, "deltas").

Each test compares every stage table whole (``agg_site_daily`` included) with a
clean run of the same data in the same database, and with the independent
computation of tests/test_stages.py.
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from pipeline import selectors, stages
from reporting.selectors import freshness as report_freshness

from .contract import generate, read_records, violations
from .test_stages import (
    FAULTS,
    STAGE_TABLES,
    VITALS,
    assert_every_stage_matches,
    ingest_in_order,
    query,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("pipeline_db")

TABLES = (*STAGE_TABLES, "agg_site_daily")


def clean_run_snapshot() -> dict:
    """Every stage table rebuilt from the staged tables alone: what a clean run of the
    same data gives."""
    for table in TABLES[2:]:
        query(f"DELETE FROM {table}")
    assert not query("SELECT 1 FROM pipeline_delta")
    stages.mark_range_dirty(datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
    stages.drain()
    return snapshot(TABLES)


def write(path, records: list[dict]) -> object:
    path.write_text("[" + ",\n".join(json.dumps(r) for r in records) + "]")
    return path


@pytest.fixture
def base(tmp_path):
    """A month and a year boundary, every fault, aggregated once."""
    generate(tmp_path, "--records", "1200", "--pages", "12", "--start", "2024-12-30T20:00:00Z",
             *FAULTS)  # fmt: skip
    main = [tmp_path / "ga.json", tmp_path / "psi.json"]
    ingest_in_order(main)
    stages.drain()
    return tmp_path, main


def _valid(path, source: str) -> list[dict]:
    return [r for _t, r in read_records(path) if not violations(source, "contract", r)]


def test_a_late_page_hour_rewrites_one_row_per_level(base):
    tmp_path, main = base
    ga = _valid(main[0], "ga")
    psi = _valid(main[1], "psi")
    corrected = dict(ga[len(ga) // 2], views=ga[len(ga) // 2].get("views", 0) + 7)
    measured = dict(psi[len(psi) // 3], lcp_ms=None, cls=0.5)  # one value gone, one changed
    late = [write(tmp_path / "ga_late1.json", [corrected]),
            write(tmp_path / "psi_late1.json", [measured])]  # fmt: skip
    ingest_in_order(late)
    runs = {run.stage: run for run in stages.drain(("staged", "page"))}
    # The interval stage's deltas are pending work: status, lag and metrics see them.
    pending = {state.stage: state.dirty for state in selectors.stage_states()}
    assert pending["interval"] == 2 and pending["daily"] == 0, pending
    with connection.cursor() as cursor:
        assert "interval" in selectors.pipeline_lag(cursor).stages
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    assert report_freshness(*everything)["pending"]
    assert stages.dirty_windows("interval")
    runs |= {run.stage: run for run in stages.drain()}
    # Two page-hours changed: each level rewrites at most two rows, whatever the size
    # of the periods holding them, and recomputes nothing (no dirty key passed on).
    assert runs["page"].rows_out == 2
    for stage in ("interval", "daily", "monthly", "yearly"):
        assert runs[stage].rows_out <= 2, (stage, runs[stage])
    assert not query("SELECT 1 FROM pipeline_dirty")
    assert not query("SELECT 1 FROM pipeline_delta")
    assert_every_stage_matches([*main, *late])
    state = snapshot(TABLES)
    assert clean_run_snapshot() == state


def _mutations(rng: random.Random, ga: list[dict], psi: list[dict]) -> tuple[list, list]:
    """A batch of corrections: new values, vitals removed (a histogram bucket and its
    counts taken away), a whole PSI record emptied, and records delivered again as
    they were."""
    out_ga, out_psi = [], []
    for record in rng.sample(ga, k=min(len(ga), rng.randint(3, 25))):
        kind = rng.random()
        if kind < 0.3:
            out_ga.append(dict(record))  # delivered again, unchanged
        else:
            views = rng.randint(0, 500)
            out_ga.append(dict(record, views=views, sessions=rng.randint(0, views),
                               engagement_seconds=round(rng.uniform(0, 900), 3)))  # fmt: skip
    for record in rng.sample(psi, k=min(len(psi), rng.randint(3, 25))):
        kind = rng.random()
        if kind < 0.25:
            out_psi.append(dict(record))
        elif kind < 0.5:
            out_psi.append(dict(record, **dict.fromkeys(VITALS)))
        elif kind < 0.75:
            gone = rng.choice(list(VITALS))
            out_psi.append(dict(record, **{gone: None}))
        else:
            out_psi.append(dict(record, lcp_ms=rng.uniform(100, 9000), inp_ms=rng.uniform(10, 900),
                                performance_score=rng.randint(0, 100)))  # fmt: skip
    return out_ga, out_psi


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_corrections_deletions_and_redeliveries_equal_a_clean_run(base, seed):
    tmp_path, main = base
    rng = random.Random(seed)
    ga, psi = _valid(main[0], "ga"), _valid(main[1], "psi")
    order = list(main)
    for index in range(rng.randint(3, 5)):
        batch_ga, batch_psi = _mutations(rng, ga, psi)
        paths = [write(tmp_path / f"ga_b{index}.json", batch_ga),
                 write(tmp_path / f"psi_b{index}.json", batch_psi)]  # fmt: skip
        rng.shuffle(paths)
        ingest_in_order(paths)
        order += paths
        # Later batches correct what earlier ones wrote, drained or not in between.
        if rng.random() < 0.6:
            stages.drain()
        ga = [dict(r) for r in batch_ga] + ga
        psi = [dict(r) for r in batch_psi] + psi
    stages.drain()
    assert not query("SELECT 1 FROM pipeline_delta")
    assert_every_stage_matches(order)
    state = snapshot(TABLES)
    assert clean_run_snapshot() == state


def _ga_records(page: str, hours: list[str]) -> list[dict]:
    return [{"page": page, "hour": hour, "users": 3, "sessions": 4, "views": 9, "bounces": 1,
             "engagement_seconds": 12.5} for hour in hours]  # fmt: skip


def test_days_that_only_deltas_brought_reach_a_first_load_above(tmp_path):
    """A page's later hours staged and paged before the interval stage first ran
    reach it as deltas; its first load recomputes them with the page's other days,
    and every day it wrote reaches the site-days and the stages above."""
    pages = [f"https://shop.example.com/p{n}" for n in range(4)]
    day1 = [r for p in pages for r in _ga_records(p, ["2024-03-04T05:00:00Z"])]
    first = [write(tmp_path / "ga_day1.json", day1)]
    ingest_in_order(first)
    stages.drain(("staged", "page"))
    later = [write(tmp_path / "ga_day3.json", _ga_records(pages[0], [
        "2024-03-06T01:00:00Z", "2024-03-06T02:00:00Z", "2024-03-06T03:00:00Z"]))]  # fmt: skip
    ingest_in_order(later)
    stages.drain(("staged", "page"))
    assert query("SELECT count(*) FROM pipeline_delta") == [(3,)]
    stages.drain()
    assert query("SELECT period_start::date::text FROM agg_site_daily ORDER BY 1") == [
        ("2024-03-04",), ("2024-03-06",)
    ]  # fmt: skip
    assert_every_stage_matches([*first, *later])
    state = snapshot(TABLES)
    assert clean_run_snapshot() == state


def test_a_window_waits_for_the_next_stage_taking_its_deltas(base):
    """A stage takes its deltas in one statement and reads the finer table in later
    ones: a window of the stage before may not commit in between (its change would
    be in both). The page window waits on the interval window's delta lock."""
    tmp_path, main = base
    ga = _valid(main[0], "ga")
    late = [write(tmp_path / "ga_late2.json", [dict(ga[0], views=ga[0]["views"] + 7)])]
    ingest_in_order(late)
    stages.drain(("staged",))
    [(month,)] = query("SELECT date_trunc('month', period_start, 'UTC') FROM pipeline_dirty")
    stages.mark_window_dirty("interval", month, stages._window_end(month, "month"))
    blocker = psycopg.connect(stages.conninfo())
    blocker.execute("LOCK TABLE page_hour IN ACCESS EXCLUSIVE MODE")
    with ThreadPoolExecutor(2) as pool:
        interval = pool.submit(stages.run_window, "interval", month)
        wait_for(lambda: waiting("relation"), "the interval window to wait for page_hour")
        page = pool.submit(stages.run_window, "page", month)
        wait_for(lambda: waiting("advisory"), "the page window to wait for the delta lock")
        blocker.rollback()
        blocker.close()
        assert interval.result().status == "done" and page.result().status == "done"
    stages.drain()
    assert_every_stage_matches([*main, *late])


def waiting(locktype: str) -> bool:
    with psycopg.connect(stages.conninfo(), autocommit=True) as conn:
        return bool(conn.execute(
            "SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND l.locktype = %s AND a.datname = current_database()",
            [locktype],
        ).fetchall())  # fmt: skip


def wait_for(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
