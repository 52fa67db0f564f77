"""The aggregation stages against an independent computation in Python.

Files are generated with faults (duplicates, corrections, malformed records,
late records in a separate file), ingested in some order and split, and the
stages drained. The expected content of every stage table is computed here
from the files alone (json + the contract's rules, last write wins in ingest
order) and compared table by table, percentiles included.
"""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from pipeline import catalog, stages
from pipeline.ingest import ingest_files

from .contract import canonical, generate, hour_of, parse_iso, read_records, violations

pytestmark = pytest.mark.usefixtures("pipeline_db")

VITALS = catalog.THRESHOLDS  # good <=, poor > (pipeline/catalog.py)
STRATEGIES = catalog.STRATEGIES
FAULTS = ["--duplicates", "0.03", "--corrections", "0.05", "--malformed", "0.01"]


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def ingest_in_order(paths) -> None:
    for path in paths:
        [result] = ingest_files([str(path)], parallel=1, show_progress=False)
        assert result.status in ("loaded", "skipped"), result.summary()


# ----------------------------------------------------------------- expectation


def final_records(paths) -> tuple[dict, dict]:
    """Last write wins over the files in ingest order: GA and PSI by natural key."""
    ga, psi = {}, {}
    for path in paths:
        source = "psi" if path.name.startswith("psi") else "ga"
        for _text, record in read_records(path):
            if violations(source, "contract", record):
                continue
            if source == "ga":
                ga[(canonical(record["page"]), hour_of(parse_iso(record["hour"])))] = record
            else:
                at = parse_iso(record["measured_at"])
                psi[(canonical(record["page"]), hour_of(at), record["strategy"])] = record
    return ga, psi


def expected_page_hours(ga: dict, psi: dict) -> dict:
    rows: dict = defaultdict(dict)
    for (url, hour), record in ga.items():
        rows[(url, hour)].update(
            {k: record[k] for k in ("users", "sessions", "views", "bounces", "engagement_seconds")}
        )
    for (url, hour, strategy), record in psi.items():
        row = rows[(url, hour)]
        row[f"{strategy}_score"] = record["performance_score"]
        for vital in VITALS:
            row[f"{strategy}_{vital}"] = record.get(vital)
    return rows


def period_of(level: str, hour: datetime, interval_hours: int = 4) -> datetime:
    if level == "interval":
        return hour.replace(hour=hour.hour - hour.hour % interval_hours)
    if level == "daily":
        return hour.replace(hour=0)
    if level == "monthly":
        return hour.replace(day=1, hour=0)
    return hour.replace(month=1, day=1, hour=0)


def expected_level(page_hours: dict, level: str, interval_hours: int = 4) -> dict:
    """Per (url, period): sums, counts, and the raw vital values for percentiles."""
    out: dict = {}
    for (url, hour), row in page_hours.items():
        agg = out.setdefault((url, period_of(level, hour, interval_hours)), defaultdict(float))
        agg.setdefault("values", defaultdict(list))
        if "users" in row:
            agg["traffic_hours"] += 1
            for key in ("users", "sessions", "views", "bounces", "engagement_seconds"):
                agg[key] += row[key]
        for strategy in STRATEGIES:
            score = row.get(f"{strategy}_score")
            if score is None:
                continue
            agg[f"{strategy}_samples"] += 1
            agg[f"{strategy}_score_sum"] += score
            for vital, (good, poor) in VITALS.items():
                value = row.get(f"{strategy}_{vital}")
                if value is None:
                    continue
                agg[f"{strategy}_{vital}_n"] += 1
                agg[f"{strategy}_{vital}_good"] += value <= good
                agg[f"{strategy}_{vital}_poor"] += value > poor
                agg["values"][f"{strategy}_{vital}"].append(value)
    return out


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


# ----------------------------------------------------------------- comparison

TRAFFIC = ("traffic_hours", "users", "sessions", "views", "bounces", "engagement_seconds")
PERF = tuple(
    f"{s}_{m}"
    for s in STRATEGIES
    for m in ("samples", "score_sum", *(f"{v}_{k}" for v in VITALS for k in ("n", "good", "poor")))
)


def close(a, b) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def assert_page_hour_table(expected: dict) -> None:
    columns = ["users", "sessions", "views", "bounces", "engagement_seconds"] + [
        f"{s}_{m}" for s in STRATEGIES for m in ("score", *VITALS)
    ]
    rows = query(
        f"SELECT p.url, h.hour, {', '.join('h.' + c for c in columns)} "
        "FROM page_hour h JOIN page p ON p.id = h.page_id"
    )
    got = {(url, hour): dict(zip(columns, values, strict=True)) for url, hour, *values in rows}
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        for column in columns:
            want, have = row.get(column), got[key][column]
            assert (want is None and have is None) or close(want, have), (key, column)


def assert_level_table(level: str, expected: dict) -> None:
    table = {"interval": "agg_interval", "daily": "agg_daily", "monthly": "agg_monthly",
             "yearly": "agg_yearly"}[level]  # fmt: skip
    columns = TRAFFIC + PERF
    hists = [f"{s}_{v}" for s in STRATEGIES for v in VITALS]
    percentiles = ", ".join(
        f"hist_percentile(a.{h}_hist, {p})" for h in hists for p in (0.5, 0.75, 0.95)
    )
    counts = ", ".join(
        f"(SELECT coalesce(sum(hist_element_count(e)), 0) FROM unnest(a.{h}_hist) e)" for h in hists
    )
    rows = query(
        f"SELECT p.url, a.period_start, {', '.join('a.' + c for c in columns)}, "
        f"{percentiles}, {counts} FROM {table} a JOIN page p ON p.id = a.page_id"
    )
    got = {}
    for url, period, *values in rows:
        got[(url, period)] = values
    assert got.keys() == expected.keys(), level
    for key, want in expected.items():
        values = got[key]
        for index, column in enumerate(columns):
            assert close(want.get(column, 0), values[index]), (level, key, column)
        offset = len(columns)
        for h_index, hist in enumerate(hists):
            sample = want["values"].get(hist, [])
            hist_count = values[offset + 3 * len(hists) + h_index]
            assert hist_count == len(sample), (level, key, hist)
            for p_index, p in enumerate((0.5, 0.75, 0.95)):
                estimate = values[offset + 3 * h_index + p_index]
                if not sample:
                    assert estimate is None
                    continue
                exact = nearest_rank(sample, p)
                assert abs(estimate - exact) <= 0.02 * exact + 1e-4, (level, key, hist, p)


def assert_every_stage_matches(paths, interval_hours: int = 4) -> None:
    ga, psi = final_records(paths)
    assert query("SELECT count(*) FROM staged_ga") == [(len(ga),)]
    assert query("SELECT count(*) FROM staged_psi") == [(len(psi),)]
    page_hours = expected_page_hours(ga, psi)
    assert_page_hour_table(page_hours)
    for level in ("interval", "daily", "monthly", "yearly"):
        assert_level_table(level, expected_level(page_hours, level, interval_hours))
    assert_site_daily_table(expected_level(page_hours, "daily"))
    assert query("SELECT count(*) FROM pipeline_dirty") == [(0,)]


def assert_site_daily_table(daily: dict) -> None:
    """agg_site_daily: every page of a site added up per day (hosts from the URLs)."""
    expected: dict = {}
    for (url, day), agg in daily.items():
        site = expected.setdefault((urlsplit(url).hostname, day), defaultdict(float))
        site.setdefault("values", defaultdict(list))
        for key, value in agg.items():
            if key == "values":
                for hist, sample in value.items():
                    site["values"][hist].extend(sample)
            else:
                site[key] += value
    columns = TRAFFIC + PERF
    hists = [f"{s}_{v}" for s in STRATEGIES for v in VITALS]
    rows = query(
        f"SELECT s.host, a.period_start, {', '.join('a.' + c for c in columns)}, "
        + ", ".join(f"hist_percentile(a.{h}_hist, 0.75)" for h in hists)
        + " FROM agg_site_daily a JOIN site s ON s.id = a.site_id"
    )
    got = {(host, day): values for host, day, *values in rows}
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        values = got[key]
        for index, column in enumerate(columns):
            assert close(want.get(column, 0), values[index]), (key, column)
        for index, hist in enumerate(hists):
            sample = want["values"].get(hist, [])
            estimate = values[len(columns) + index]
            if not sample:
                assert estimate is None
            else:
                exact = nearest_rank(sample, 0.75)
                assert abs(estimate - exact) <= 0.02 * exact + 1e-4, (key, hist)


STAGE_TABLES = ("staged_ga", "staged_psi", "page_hour", "agg_interval", "agg_daily",
                "agg_monthly", "agg_yearly")  # fmt: skip


def snapshot(tables: tuple[str, ...] = STAGE_TABLES) -> dict:
    """Every row of ``tables``, every column, bit for bit; histograms are multisets (an
    interval or daily histogram may list its buckets in any order), so they are compared
    normalised with hist_merge."""
    out = {}
    for table in tables:
        columns = [
            f"hist_merge({c})" if c.endswith("_hist") else c
            for (c,) in query(
                "SELECT column_name::text FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position",
                [table],
            )
        ]
        out[table] = sorted(map(repr, query(f"SELECT {', '.join(columns)} FROM {table}")))
    return out


# ----------------------------------------------------------------- tests


@pytest.fixture
def dataset(tmp_path):
    """Data over a month and a year boundary, with every fault and a late file."""
    generate(tmp_path, "--records", "2400", "--pages", "24", "--start", "2024-12-29T20:00:00Z",
             "--late", "0.05", *FAULTS)  # fmt: skip
    return tmp_path


def test_every_stage_equals_an_independent_computation(dataset):
    order = [dataset / "ga.json", dataset / "psi.json", dataset / "ga_late.json",
             dataset / "psi_late.json"]  # fmt: skip
    ingest_in_order(order[:2])
    stages.drain()
    ingest_in_order(order[2:])  # late data after the first full run
    runs = stages.drain()
    assert {run.stage for run in runs} == set(stages.STAGES)
    assert_every_stage_matches(order)
    # The ledger saw every stage finish.
    assert not query("SELECT stage FROM pipeline_ledger WHERE status <> 'done'")


def test_a_dirty_rerun_of_every_stage_changes_nothing(dataset):
    ingest_in_order([dataset / "ga.json", dataset / "psi.json"])
    stages.drain()
    before = snapshot()
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    marked = stages.mark_range_dirty(*everything)
    assert marked > 0
    runs = stages.drain()
    assert {run.stage for run in runs} == set(stages.TIME_STAGES)
    assert snapshot() == before
    # And each stage run twice on nothing dirty does nothing.
    assert stages.drain() == []


def test_staged_tables_emptied_by_a_crash_are_rebuilt_before_the_next_stage(dataset):
    """The staged tables are unlogged: crash recovery empties them and their
    marker. The next run rebuilds them from raw, then stages the late data:
    every stage ends equal to the independent computation."""
    order = [dataset / "ga.json", dataset / "psi.json", dataset / "ga_late.json",
             dataset / "psi_late.json"]  # fmt: skip
    ingest_in_order(order[:2])
    stages.drain()
    staged_before = {t: snapshot()[t] for t in ("staged_ga", "staged_psi")}
    assert query("SELECT relpersistence FROM pg_class WHERE relname = 'staged_ga'") == [("u",)]
    query("TRUNCATE staged_ga, staged_psi, staged_marker")  # what crash recovery does
    assert query("SELECT staged_ensure()") == [(True,)]
    assert {t: snapshot()[t] for t in ("staged_ga", "staged_psi")} == staged_before
    assert query("SELECT staged_ensure()") == [(False,)]  # whole again: nothing to do
    assert not query("SELECT 1 FROM pipeline_dirty")  # a rebuild changes nothing downstream
    query("TRUNCATE staged_ga, staged_psi, staged_marker")
    ingest_in_order(order[2:])  # the next staged stage rebuilds first, then stages
    stages.drain()
    assert_every_stage_matches(order)


def _split(path, parts: int, rng: random.Random, out_dir) -> list:
    texts = [text for text, _ in read_records(path)]
    cuts = sorted(rng.sample(range(1, len(texts)), parts - 1))
    pieces = [texts[a:b] for a, b in zip([0, *cuts], [*cuts, len(texts)], strict=True)]
    paths = []
    for index, piece in enumerate(pieces):
        target = out_dir / f"{path.stem}_part{index}.json"
        target.write_text("[" + ",\n".join(piece) + "]")
        paths.append(target)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_order_and_split_ends_equal_to_the_data_in_ingest_order(dataset, tmp_path, seed):
    rng = random.Random(seed)
    parts = []
    for name in ("ga.json", "psi.json", "ga_late.json", "psi_late.json"):
        count = rng.randint(1, 3) if "late" not in name else 1
        parts += _split(dataset / name, count, rng, tmp_path) if count > 1 else [dataset / name]
    rng.shuffle(parts)
    for index, path in enumerate(parts):
        ingest_in_order([path])
        if rng.random() < 0.5 or index == len(parts) - 1:
            stages.drain()
    assert_every_stage_matches(parts)
    # ... and equal to one clean run of the same data in the same order.
    state = snapshot()
    for table in ("staged_ga", "staged_psi", "page_hour", "agg_interval", "agg_daily",
                  "agg_monthly", "agg_yearly"):  # fmt: skip
        query(f"DELETE FROM {table}")
    query("DELETE FROM pipeline_ledger WHERE stage <> 'staged'")
    query("UPDATE pipeline_ledger SET status = 'pending'")
    stages.drain()
    assert snapshot() == state


def staged_primary_keys() -> dict:
    return dict(query(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relname IN ('staged_ga', 'staged_psi') AND i.indisprimary"
    ))  # fmt: skip


def staged_primary_key_oids() -> dict:
    """The primary key indexes' oids: a key dropped and built again has a new one."""
    return dict(query(
        "SELECT c.relname, i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relname IN ('staged_ga', 'staged_psi') AND i.indisprimary"
    ))  # fmt: skip


def test_a_first_load_without_repeated_keys_keeps_the_staged_primary_keys(tmp_path):
    # Clean files into empty staged tables: the fast path loads them without
    # their primary keys and builds them afterwards; they must be back.
    before, oids = staged_primary_keys(), staged_primary_key_oids()
    generate(tmp_path, "--records", "960", "--pages", "8", "--late", "0.05")
    main = [tmp_path / "ga.json", tmp_path / "psi.json"]
    ingest_in_order(main)
    assert query("SELECT count(*) FROM staged_ga") == [(0,)]
    stages.drain()
    assert staged_primary_keys() == before and len(before) == 2
    rebuilt = staged_primary_key_oids()
    assert all(rebuilt[table] != oids[table] for table in oids)  # the keys were built anew
    # ... and the keys still hold: late data takes the general path and ends equal.
    late = [tmp_path / "ga_late.json", tmp_path / "psi_late.json"]
    ingest_in_order(late)
    stages.drain()
    assert_every_stage_matches(main + late)


def test_a_first_load_marks_each_page_day_with_the_hours_of_its_records(tmp_path):
    generate(tmp_path, "--records", "960", "--pages", "8", "--start", "2024-12-31T13:00:00Z")
    ingest_in_order([tmp_path / "ga.json", tmp_path / "psi.json"])
    for (batch_id,) in query("SELECT id FROM ingest_batch ORDER BY id"):
        assert stages.run_staged(batch_id).status == "done"
    expected: dict = defaultdict(int)
    for name, field in (("ga.json", "hour"), ("psi.json", "measured_at")):
        for _text, record in read_records(tmp_path / name):
            hour = hour_of(parse_iso(record[field]))
            day = hour.replace(hour=0)
            expected[(canonical(record["page"]), day)] |= 1 << hour.hour
    got = query(
        "SELECT p.url, d.period_start, d.hours FROM pipeline_dirty d "
        "JOIN page p ON p.id = d.page_id WHERE d.stage = 'page'"
    )
    assert {(url, day): hours for url, day, hours in got} == dict(expected)


def test_a_first_load_that_repeats_a_key_falls_back_and_keeps_the_primary_keys(dataset):
    before, oids = staged_primary_keys(), staged_primary_key_oids()
    ingest_in_order([dataset / "ga.json", dataset / "psi.json"])  # files with duplicates
    stages.drain()
    assert staged_primary_keys() == before
    assert staged_primary_key_oids() == oids  # rolled back to the savepoint: the same keys
    assert_every_stage_matches([dataset / "ga.json", dataset / "psi.json"])


def test_the_page_stage_waits_for_a_first_load_of_staged_without_a_deadlock(tmp_path):
    # A first load holds its empty staged table exclusively (its primary key is
    # dropped and rebuilt) and marks its page-days dirty at its end. A page stage
    # that started meanwhile, on the page-days the GA batch dirtied, must wait
    # before taking any of those keys: had it taken them, the load's marks would
    # wait for it while it waits for the table, a deadlock.
    generate(tmp_path, "--records", "960", "--pages", "8")
    main = [tmp_path / "ga.json", tmp_path / "psi.json"]
    ingest_in_order(main)
    [(ga_batch,)] = query("SELECT id FROM ingest_batch WHERE source = 'ga'")
    [(psi_batch,)] = query("SELECT id FROM ingest_batch WHERE source = 'psi'")
    assert stages.run_staged(ga_batch).status == "done"
    with stages.connect() as loading:
        loading.execute("LOCK TABLE staged_psi IN ACCESS EXCLUSIVE MODE")  # the load begins
        with ThreadPoolExecutor(1) as pool:
            page = pool.submit(stages.drain, ("page",))
            for _ in range(200):  # until the page stage's backend waits for staged_psi
                if query("SELECT count(*) FROM pg_locks WHERE NOT granted "
                         "AND relation = 'staged_psi'::regclass AND database = "
                         "(SELECT oid FROM pg_database WHERE datname = current_database())"
                         ) != [(0,)]:  # fmt: skip
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the page stage did not wait for the first load")
            loading.execute("SELECT stage_staged(%s)", (psi_batch,))  # rows, key, marks
            loading.commit()
            assert [run.status for run in page.result()]
    stages.drain()  # the PSI batch's ledger row: staged again, changing nothing
    assert_every_stage_matches(main)


def test_pipeline_status_counts_rows_and_says_loading_for_a_table_being_loaded(dataset):
    ingest_in_order([dataset / "ga.json", dataset / "psi.json"])
    stages.drain()

    def status() -> dict:
        out = io.StringIO()
        call_command("pipeline", "status", stdout=out)
        return {line.split()[0]: line.split()[1] for line in out.getvalue().splitlines()[2:]}

    staged = query("SELECT (SELECT count(*) FROM staged_ga) + (SELECT count(*) FROM staged_psi)")
    assert status()["staged"] == f"{staged[0][0]:,}"
    assert status()["page"] == f"{query('SELECT count(*) FROM page_hour')[0][0]:,}"
    with stages.connect() as loading:  # as a first load of staged_psi holds it
        loading.execute("LOCK TABLE staged_psi IN ACCESS EXCLUSIVE MODE")
        assert status()["staged"] == "loading"
        loading.rollback()


def test_a_window_must_start_on_its_unit(dataset):
    with pytest.raises(ValueError, match="starts on a UTC month"):
        stages.run_window("page", datetime(2025, 1, 1, 6, tzinfo=UTC))
    with pytest.raises(ValueError, match="starts on a UTC year"):
        stages.run_window("monthly", datetime(2025, 2, 1, tzinfo=UTC))


def test_float_sums_of_any_finite_value_neither_fail_nor_depend_on_order(tmp_path):
    # 1e303 s of engagement is absurd but finite, so the contract accepts it:
    # no stage may fail on it, and a clean rerun gives the same bits.
    records = [
        {"page": "https://big.example.com/a", "hour": f"2025-01-0{day}T0{hour}:00:00Z",
         "users": 1, "sessions": 1, "views": 1, "bounces": 0, "engagement_seconds": value}
        for day, hour, value in [(1, 1, 1e303), (1, 2, 0.1234567), (2, 3, 2.5), (2, 4, 1e15)]
    ]  # fmt: skip
    path = tmp_path / "ga.json"
    path.write_text(json.dumps(records))
    ingest_in_order([path])
    stages.drain()
    assert not query("SELECT stage FROM pipeline_ledger WHERE status <> 'done'")
    # The aggregate tables' float sums are exact decimals of the values summed to
    # a millionth: 1e303 (15 digits, as the cast of so large a double keeps) plus
    # the rest of the year, to the last digit.
    [(yearly,)] = query("SELECT engagement_seconds FROM agg_yearly")
    assert yearly - Decimal("1e303") == Decimal("1000000000000002.623457")
    assert float(yearly) == 1e303
    [(day2,)] = query("SELECT engagement_seconds FROM agg_daily WHERE period_start = "
                      "'2025-01-02T00:00:00Z'")  # fmt: skip
    assert day2 == Decimal("1000000000000002.5")
    [(day1,)] = query("SELECT engagement_seconds FROM agg_daily WHERE period_start = "
                      "'2025-01-01T00:00:00Z'")  # fmt: skip
    assert day1 - Decimal("1e303") == Decimal("0.123457")
    state = snapshot()
    for table in ("page_hour", "agg_interval", "agg_daily", "agg_monthly", "agg_yearly"):
        query(f"DELETE FROM {table}")
    stages.mark_range_dirty(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    stages.drain()
    assert snapshot() == state


@pytest.fixture
def data_settings_restored(pipeline_db):
    """The recorded settings that shape data (pipeline_data_setting), put back afterwards:
    the test database's other tests run with the values its migrate recorded."""
    saved = query("SELECT name, value, recorded_at FROM pipeline_data_setting")
    yield
    query("DELETE FROM pipeline_data_setting")
    for row in saved:
        query("INSERT INTO pipeline_data_setting (name, value, recorded_at) VALUES (%s, %s, %s)",
              row)  # fmt: skip


@pytest.mark.parametrize("hours", [3, 6])
def test_interval_length_is_a_setting(dataset, settings, data_settings_restored, hours):
    # The length is recorded with the data (pipeline/datasettings.py): a new one is
    # refused until `pipeline reshape` records it, here over empty tables.
    built_with, settings.METRIFLOW_INTERVAL_HOURS = settings.METRIFLOW_INTERVAL_HOURS, hours
    refusal = f"interval_hours: built with {built_with}, configured {hours}"
    with pytest.raises(CommandError, match=refusal):
        call_command("pipeline", "run", stdout=io.StringIO())
    call_command("pipeline", "reshape", "--interval-hours", str(hours), stdout=io.StringIO())
    main = [dataset / "ga.json", dataset / "psi.json"]
    ingest_in_order(main)
    stages.drain()
    starts = {h for (h,) in query("SELECT DISTINCT extract(hour FROM period_start AT TIME ZONE "
                                  "'UTC')::int FROM agg_interval")}  # fmt: skip
    assert starts == set(range(0, 24, hours))
    # Late records dirty single hours of days already aggregated: only the
    # intervals holding them are recomputed, and every level still matches.
    late = [dataset / "ga_late.json", dataset / "psi_late.json"]
    ingest_in_order(late)
    stages.drain(("staged",))
    assert query("SELECT count(*) FROM pipeline_dirty WHERE hours <> 16777215") != [(0,)]
    stages.drain()
    assert_every_stage_matches(main + late, interval_hours=hours)


def test_histogram_buckets_stay_within_two_percent():
    values = [10 ** (k / 50) for k in range(-200, 350)]  # 1e-4 .. 1e7
    rows = query("SELECT v, hist_value(hist_bucket(v)) FROM unnest(%s::float8[]) v", [values])
    for value, estimate in rows:
        assert abs(estimate - value) <= 0.0197 * value or abs(estimate - value) <= 1e-4
    assert query("SELECT hist_value(hist_bucket(0))") == [(0.0,)]


def test_a_failed_window_is_recorded_keeps_its_keys_and_is_retried(dataset):
    ingest_in_order([dataset / "ga.json"])
    stages.drain(("staged",))
    start = stages.dirty_windows("page")[0]
    query("ALTER TABLE page_hour ADD CONSTRAINT no_rows CHECK (false) NOT VALID")
    try:
        with pytest.raises(Exception, match="no_rows"):
            stages.run_window("page", start)
    finally:
        query("ALTER TABLE page_hour DROP CONSTRAINT no_rows")
    [(status, attempts, error)] = query(
        "SELECT status, attempts, error FROM pipeline_ledger WHERE stage = 'page'"
    )
    assert status == "failed" and attempts == 1 and "no_rows" in error
    assert start in stages.dirty_windows("page")  # its keys were rolled back, still dirty
    assert stages.run_window("page", start).status == "done"
    [(status, attempts)] = query(
        "SELECT status, attempts FROM pipeline_ledger WHERE stage = 'page'"
    )
    assert (status, attempts) == ("done", 2)
