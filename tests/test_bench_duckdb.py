"""DuckDB's roll-ups (pipeline/bench_duckdb.py) against Metriflow's over the same files.

The benchmark prints DuckDB's time beside Metriflow's; this holds the two to the
same result. Files are generated with duplicates, corrections, many non-canonical
URL spellings and offset timestamps, ingested and drained through Metriflow, then
read by DuckDB: every integer sum and count of agg_daily and agg_monthly must equal
DuckDB's exactly, and Metriflow's histogram percentiles (decoded by the SQL
function hist_percentile) must be within the contract's bound of DuckDB's exact
nearest-rank ones.
"""

from __future__ import annotations

import pytest
from django.db import connection

from pipeline import bench_duckdb, stages
from pipeline.catalog import STRATEGIES, VITALS
from pipeline.ingest import ingest_files

from .contract import generate

LEVELS = {"daily": "agg_daily", "monthly": "agg_monthly"}
PERCENTILES = (0.5, 0.75, 0.95)


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@pytest.fixture
def both(pipeline_db, tmp_path):
    """(DuckRun, files) after Metriflow has ingested and drained the same files."""
    # 60 days of 6 pages from 20 January: three months, the first and last partial.
    generate(tmp_path, "--records", "8640", "--pages", "6", "--sites", "2",
             "--start", "2024-01-20T00:00:00Z", "--url-variants", "0.3", "--tz-offsets", "0.3",
             "--duplicates", "0.03", "--corrections", "0.05")  # fmt: skip
    ga, psi = tmp_path / "ga.json", tmp_path / "psi.json"
    results = ingest_files([str(ga), str(psi)], show_progress=False)
    assert [r.status for r in results] == ["loaded", "loaded"], [r.summary() for r in results]
    assert stages.failed_runs(stages.drain()) == []
    duck = bench_duckdb.run(ga, psi, threads=2)
    yield duck
    duck.close()


def metriflow(level: str, columns: list[str]) -> dict:
    rows = query(
        f"SELECT p.url, a.period_start AT TIME ZONE 'UTC', {', '.join(columns)} "
        f"FROM {LEVELS[level]} a JOIN page p ON p.id = a.page_id"
    )
    return {(url, period): tuple(values) for url, period, *values in rows}


def test_duckdb_dedups_and_canonicalises_like_metriflow(both):
    duck = both
    con = duck.connection
    # The files do repeat keys and spell pages in several ways.
    [(records,)] = con.execute("SELECT count(*) FROM ga_file").fetchall()
    [(spellings, pages)] = con.execute(
        "SELECT count(DISTINCT page), count(DISTINCT url) FROM spelling"
    ).fetchall()
    assert spellings > pages
    assert con.execute("SELECT count(*) FROM ga").fetchall() == query(
        "SELECT count(*) FROM staged_ga"
    )
    assert records > con.execute("SELECT count(*) FROM ga").fetchone()[0]
    assert con.execute("SELECT count(*) FROM psi").fetchall() == query(
        "SELECT count(*) FROM staged_psi"
    )
    urls = con.execute("SELECT DISTINCT url FROM spelling ORDER BY url").fetchall()
    assert urls == query('SELECT url FROM page ORDER BY url COLLATE "C"')


def test_daily_and_monthly_match_metriflow(both):
    """Integer sums and counts equal; percentiles within 2% (CLS: or 0.005) of exact."""
    for level in LEVELS:
        assert_integers_equal(both, level)
        assert_percentiles_within_bound(both, level)


def assert_integers_equal(both, level: str) -> None:
    columns = list(bench_duckdb.integer_columns())
    assert {"users", "views", "mobile_samples", "desktop_cls_poor", "mobile_inp_ms_n"} <= set(
        columns
    )
    ours = metriflow(level, [f"a.{c}" for c in columns])
    theirs = both.rows(level, tuple(columns))
    assert len(ours) == both.count(level) > 0
    assert theirs == ours
    # The counts are not trivially zero: every vital was measured in every period.
    for key, values in theirs.items():
        row = dict(zip(columns, values, strict=True))
        assert row["users"] > 0 and all(row[f"{s}_{v.name}_n"] > 0 for s in STRATEGIES
                                        for v in VITALS), key  # fmt: skip


def assert_percentiles_within_bound(both, level: str) -> None:
    names = [f"{s}_{v.name}" for s in STRATEGIES for v in VITALS]
    estimates = metriflow(
        level, [f"hist_percentile(a.{n}_hist, {p})" for n in names for p in PERCENTILES]
    )
    exact = both.rows(level, bench_duckdb.percentile_columns())
    assert exact.keys() == estimates.keys()
    compared = 0
    for key, values in exact.items():
        for index, (want, have) in enumerate(zip(values, estimates[key], strict=True)):
            name = names[index // len(PERCENTILES)]
            if want is None:
                assert have is None, (key, name)
                continue
            bound = 0.02 * want
            if name.endswith("_cls"):
                bound = max(bound, 0.005)
            assert abs(have - want) <= bound + 1e-9, (key, name, want, have)
            compared += 1
    assert compared == len(exact) * len(names) * len(PERCENTILES)


def test_first_difference_finds_a_changed_count(both):
    columns = bench_duckdb.AGREEMENT_COLUMNS
    with connection.cursor() as cursor:
        assert bench_duckdb.first_difference(both, cursor, "monthly", columns) is None
        assert bench_duckdb.first_difference(both, cursor, "daily", columns) is None
        cursor.execute(
            "UPDATE agg_monthly SET desktop_lcp_ms_n = desktop_lcp_ms_n + 1 "
            "WHERE (period_start, page_id) = (SELECT period_start, page_id FROM agg_monthly "
            "ORDER BY period_start DESC, page_id LIMIT 1) RETURNING page_id, period_start"
        )
        [(page_id, period)] = cursor.fetchall()
        [(url,)] = query("SELECT url FROM page WHERE id = %s", [page_id])
        difference = bench_duckdb.first_difference(both, cursor, "monthly", columns)
    assert difference is not None
    assert difference.startswith(f"{url} {period:%Y-%m-%d} desktop_lcp_ms_n: DuckDB "), difference


def test_missing_file_is_a_clear_error(tmp_path):
    (tmp_path / "ga.json").write_text("[]\n")
    with pytest.raises(FileNotFoundError, match=r"psi\.json"):
        bench_duckdb.run(tmp_path / "ga.json", tmp_path / "psi.json")
