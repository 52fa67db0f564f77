"""What a phase of the pipeline benchmark wrote (pipeline/bench.py, ``Writes``).

The benchmark explains a late batch's cost by the share of each stage table's
pages it rewrote, read from the pages' LSNs with pageinspect. Here that share is
held to an independent count from the rows themselves: a row a late batch
rewrites leaves its old version on one heap page (marked deleted) and its new
version on another or the same, so the pages written are the blocks of the
changed rows' old and new ctids. Autovacuum is off on the tables meanwhile: it
would write pages (visibility flags) that no row change explains.
"""

from __future__ import annotations

import pytest
from django.db import connection

from pipeline import catalog, stages
from pipeline.bench import Writes
from pipeline.ingest import ingest_files

from .contract import generate

HEAPS = ("page_hour", "agg_interval", "agg_daily")


def _versions(cursor, table: str) -> dict:
    """{key: (xmin, block)} of every row of a stage table."""
    key = "hour" if table == "page_hour" else "period_start"
    cursor.execute(
        f"SELECT {key}, page_id, xmin::text, (ctid::text::point)[0]::integer FROM {table}"
    )
    return {(row[0], row[1]): (row[2], row[3]) for row in cursor.fetchall()}


@pytest.fixture
def autovacuum_off(pipeline_db):
    with connection.cursor() as cursor:
        for table in HEAPS:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    yield
    with connection.cursor() as cursor:
        for table in HEAPS:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def test_relations_are_the_logged_stage_tables_with_their_keys(pipeline_db):
    with connection.cursor() as cursor:
        relations = Writes.relations(cursor)
    tables = [t for s in catalog.STAGES if s.name not in ("raw", "staged") for t in s.tables]
    expected = []
    for table in [*tables, catalog.SITE_DAILY_TABLE]:
        expected += [table, f"{table}_pkey"]
    assert relations == expected


def test_pages_written_by_a_late_batch_equal_the_blocks_of_the_rows_it_changed(
    autovacuum_off, tmp_path
):
    generate(tmp_path, "--records", "4800", "--pages", "10", "--late", "0.02")
    loaded = ingest_files([str(tmp_path / "ga.json"), str(tmp_path / "psi.json")])
    assert all(r.status == "loaded" for r in loaded)
    assert not stages.failed_runs(stages.drain())

    with connection.cursor() as cursor:
        before = {t: _versions(cursor, t) for t in HEAPS}
        meter = Writes(cursor)
        late = ingest_files([str(tmp_path / "ga_late.json"), str(tmp_path / "psi_late.json")])
        assert all(r.status == "loaded" for r in late)
        assert not stages.failed_runs(stages.drain())
        after = {t: _versions(cursor, t) for t in HEAPS}
        shares = {name: (share, pages) for name, share, pages in meter.pages_written()}
        summary = meter.summary()

    for table in HEAPS:
        old, new = before[table], after[table]
        changed = [k for k in new if old.get(k, (None,))[0] != new[k][0]]
        assert changed, f"the late batch changed no row of {table}"
        written = {new[k][1] for k in changed} | {old[k][1] for k in changed if k in old}
        written |= {old[k][1] for k in old if k not in new}  # a row deleted
        share, pages = shares[table]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_relation_size(%s::regclass) / 8192", (table,))
            assert pages == cursor.fetchone()[0]
        assert pages <= Writes.SAMPLE  # every page read: the share is exact here
        assert share == pytest.approx(len(written) / pages), table
        assert share > 0, table
    assert "MB of WAL" in summary and "page_hour " in summary
