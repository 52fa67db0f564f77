"""Late data by deltas: a changed page-hour adds its new contribution and takes away
its old one at every level above it (sql/functions/stages.sql, "deltas").

Each test compares every stage table whole (``agg_site_daily`` included) with a
clean run of the same data in the same database, and with the independent
computation of tests/test_stages.py.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from django.db import connection

from pipeline import selectors, stages

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
