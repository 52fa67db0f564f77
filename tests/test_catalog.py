"""The catalog (pipeline/catalog.py) is the one declaration of the stages and measures:
every copy derived from it, in Python and in the database, agrees with it."""

from __future__ import annotations

import math
import random
import re

import psycopg
import pytest
from django.db import connection

from pipeline import catalog, reference

from .conftest import admin_conninfo, database_url, run_manage


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def table_columns(table: str) -> list[tuple[str, str, str]]:
    """(name, data_type, udt_name) of a table's columns, in table order."""
    return query(
        "SELECT column_name, data_type, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        [table],
    )


# ------------------------------------------------------------------ the declaration itself


def test_the_chain_hands_off_stage_to_stage_in_order():
    names = [stage.name for stage in catalog.STAGES]
    assert [stage.next for stage in catalog.STAGES] == [*names[1:], None]
    assert tuple(names[1:]) == catalog.LEDGER_STAGES  # raw is ingestion, not a ledger stage
    assert tuple(s.name for s in catalog.STAGES if s.window) == catalog.TIME_STAGES
    # Windows never get finer along the chain: a later window holds an earlier one.
    units = [catalog.WINDOW_UNIT[s] for s in catalog.TIME_STAGES]
    assert units == sorted(units, key=("month", "year").index)
    assert [catalog.stage_rank(s) for s in catalog.LEDGER_STAGES] == list(
        range(len(catalog.LEDGER_STAGES))
    )
    with pytest.raises(ValueError, match="not a pipeline stage: 'raw'"):
        catalog.stage_rank("raw")


def test_aggregate_columns_are_the_measures_of_each_strategy_and_vital():
    columns = catalog.aggregate_columns("agg_daily")
    assert columns[:3] == ("period_start", "page_id", "site_id")
    assert catalog.aggregate_columns("agg_site_daily") == (columns[0], *columns[2:])
    expected = ["traffic_hours", "users", "sessions", "views", "bounces", "engagement_seconds"]
    for strategy in catalog.STRATEGIES:
        expected += [f"{strategy}_samples", f"{strategy}_score_sum"]
        for vital in catalog.VITAL_NAMES:
            expected += [f"{strategy}_{vital}_{k}" for k in ("n", "good", "poor", "hist")]
    assert list(columns[3:]) == expected
    kinds = {m.name: m.kind for m in catalog.aggregate_measures()}
    assert {n for n, k in kinds.items() if k == catalog.EXACT_SUM} == {
        "engagement_seconds",
        *(f"{s}_score_sum" for s in catalog.STRATEGIES),
    }
    assert {n for n, k in kinds.items() if k == catalog.HIST} == {
        c for c in expected if c.endswith("_hist")
    }
    with pytest.raises(ValueError, match="not an aggregate table: 'page_hour'"):
        catalog.aggregate_columns("page_hour")


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="growth > 1"):
        catalog.Histogram(base=1e-4, growth=1.0)
    with pytest.raises(ValueError, match="good_max must not exceed poor_min"):
        catalog.Vital("lcp_ms", 4000, 2500, "ms")


# ------------------------------------------------------------------ Python copies


def test_celery_queues_and_routes_are_the_stages():
    import pipeline.tasks  # noqa: F401  (registers the stage tasks)
    from metriflow.celery import STAGES, app

    assert STAGES == catalog.QUEUES
    queues = app.conf.task_queues
    assert [q.name for q in queues] == [s.queue for s in catalog.STAGES]
    assert all(q.routing_key == q.name for q in queues)
    routes = app.conf.task_routes
    for stage in catalog.STAGES:
        assert routes[f"pipeline.stage.{stage.name}"] == {
            "queue": stage.queue,
            "routing_key": stage.queue,
        }
    assert {route["queue"] for route in routes.values()} <= set(catalog.QUEUES)
    assert app.conf.task_default_queue in catalog.QUEUES
    registered = {name for name in app.tasks if name.startswith("pipeline.stage.")}
    assert registered == {f"pipeline.stage.{name}" for name in catalog.CHAIN}


def test_pipeline_stage_constants_are_the_catalogs():
    from pipeline import selectors, stages, tasks

    assert stages.STAGES == catalog.LEDGER_STAGES
    assert stages.TIME_STAGES == catalog.TIME_STAGES
    assert stages.WINDOW_UNIT == catalog.WINDOW_UNIT
    assert set(tasks.WINDOW_TASKS) == set(catalog.TIME_STAGES)
    assert {s.name: s.tables for s in catalog.STAGES} == selectors.STAGE_TABLES
    assert list(selectors.STAGE_TABLES) == list(catalog.CHAIN)


def test_observability_stage_lists_are_the_catalogs():
    from observability import bench, collectors

    assert bench.TIME_STAGES == catalog.TIME_STAGES
    assert collectors.TIME_STAGES == catalog.TIME_STAGES
    assert collectors.LEDGER_STAGES == catalog.LEDGER_STAGES
    assert collectors.STAGES == catalog.QUEUES


def test_metric_constants_are_the_catalogs():
    from reporting import metrics

    assert metrics.STRATEGIES == catalog.STRATEGIES
    assert tuple(v.name for v in catalog.VITALS) == metrics.VITALS
    assert {v.name: (v.good_max, v.poor_min) for v in catalog.VITALS} == metrics.THRESHOLDS
    assert tuple(m.name for m in catalog.TRAFFIC) == metrics.TRAFFIC
    assert metrics.TRAFFIC_FLOAT_SUMS == ("engagement_seconds",)
    assert {v: metrics.vital_kind(v) for v in metrics.VITALS} == {
        v.name: v.precision for v in catalog.VITALS
    }
    assert {v.precision for v in catalog.VITALS} <= set(metrics.PRECISION)
    h = catalog.HISTOGRAM
    for bucket in (-1, 0, 1, 2, 100, 235, 600):
        expected = 0.0 if bucket <= 0 else 2 * h.base * h.growth**bucket / (1 + h.growth)
        assert metrics.bucket_value(bucket) == expected


def test_other_lists_of_strategies_and_vitals_agree():
    """Input formats, the generator and the dashboard keep lists of their own: the same."""
    from dashboard import views as dashboard
    from loadgen import model as loadgen
    from pipeline.fetch import psi as fetch
    from pipeline.ingest import records

    from . import contract

    assert tuple(records.PSI_VITALS) == catalog.VITAL_NAMES
    assert set(records.STRATEGIES) == set(catalog.STRATEGIES)
    assert tuple(fetch.STRATEGIES) == catalog.STRATEGIES
    assert tuple(loadgen.STRATEGIES) == catalog.STRATEGIES
    assert tuple(loadgen._VITALS) == catalog.VITAL_NAMES
    assert tuple(contract.VITALS) == catalog.VITAL_NAMES
    assert set(dashboard.SHOWN_VITALS) <= set(catalog.VITAL_NAMES)
    assert tuple(records.GA_FIELDS[2:]) == tuple(m.name for m in catalog.TRAFFIC)


def _model_columns(model) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if f.column]


def _shape(field) -> tuple:
    base = getattr(field, "base_field", None)
    return type(field), field.null, type(base) if base is not None else None


def test_report_models_fields_are_the_catalogs():
    from reporting import models

    measures = {m.name: m for m in catalog.aggregate_measures()}
    for model in (
        models.IntervalAggregate,
        models.DailyAggregate,
        models.MonthlyAggregate,
        models.YearlyAggregate,
        models.SiteDailyAggregate,
    ):
        table = model._meta.db_table
        assert set(_model_columns(model)) == set(catalog.aggregate_columns(table)), table
        for field in model._meta.concrete_fields:
            if field.column in measures:
                wanted = models.AGGREGATE_FIELDS[measures[field.column].kind]()
                assert _shape(field) == _shape(wanted), (table, field.column)
    page_hour = {f.column: f for f in models.PageHour._meta.concrete_fields}
    assert set(page_hour) == {
        "hour",
        "page_id",
        "site_id",
        *(m.name for m in catalog.TRAFFIC),
        *catalog.page_hour_performance_columns(),
    }
    for measure in catalog.TRAFFIC:
        assert isinstance(page_hour[measure.name], models.PAGE_HOUR_FIELDS[measure.kind])


# ------------------------------------------------------------------ the database

# The model fields that read each SQL type of the aggregate tables. The reports read the
# exact decimal sums as floats (reporting/models.py AGGREGATE_FIELDS decides).
_READS = {
    "bigint": ("BigIntegerField",),
    "integer": ("IntegerField",),
    "numeric(1000,6)": ("DecimalField", "FloatField"),
    "bigint[]": ("ArrayField",),
}


def typed_columns(table: str) -> dict[str, str]:
    """Each column of a table with its type as format_type() spells it, in table order."""
    return dict(
        query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [table],
        )
    )


@pytest.mark.django_db
@pytest.mark.parametrize("table", catalog.AGGREGATE_TABLES)
def test_aggregate_tables_hold_the_catalogs_columns_in_order(table):
    from reporting import models

    names = [name for name, _, _ in table_columns(table)]  # information_schema
    assert names == list(catalog.aggregate_columns(table))
    columns = typed_columns(table)
    assert list(columns.items()) == list(catalog.aggregate_column_types(table).items())
    for measure in catalog.aggregate_measures():
        field = models.AGGREGATE_FIELDS[measure.kind]()
        assert type(field).__name__ in _READS[columns[measure.name]], (table, measure.name)


@pytest.mark.django_db
def test_delta_table_holds_the_aggregate_columns():
    columns = typed_columns("pipeline_delta")
    assert list(columns)[: len(catalog.aggregate_columns())] == list(catalog.aggregate_columns())
    assert set(catalog.aggregate_column_types().items()) <= set(columns.items())


@pytest.mark.django_db
def test_page_hour_and_psi_tables_hold_the_catalogs_columns():
    names = [name for name, _, _ in table_columns("page_hour")]
    assert names == [
        "hour",
        "page_id",
        "site_id",
        *(m.name for m in catalog.TRAFFIC),
        *catalog.page_hour_performance_columns(),
    ]
    for table in ("raw_psi", "staged_psi"):
        names = [name for name, _, _ in table_columns(table)]
        assert tuple(n for n in names if n in catalog.VITAL) == catalog.VITAL_NAMES, table


def _check_lists(column: str) -> dict[str, tuple[str, ...]]:
    """Per table, the values a CHECK (column IN (...)) constraint allows, in order."""
    found = {}
    for table, definition in query(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
    ):
        match = re.search(rf"\({column} = ANY \(ARRAY\[(.*?)\]\)\)", definition)
        if match:
            found[table] = tuple(re.findall(r"'(\w+)'::text", match.group(1)))
    return found


@pytest.mark.django_db
def test_stage_and_strategy_checks_in_the_schema_are_the_catalogs():
    stage_checks = _check_lists("stage")
    assert {"pipeline_ledger", "pipeline_dirty"} <= set(stage_checks)
    assert stage_checks["pipeline_ledger"] == catalog.LEDGER_STAGES
    assert stage_checks["pipeline_dirty"] == catalog.TIME_STAGES
    for table, listed in stage_checks.items():
        # Each lists the stages from one of them to the end of the chain, in order.
        assert listed == catalog.CHAIN[catalog.CHAIN.index(listed[0]) :], table
    assert _check_lists("strategy")["staged_psi"] == catalog.STRATEGIES


@pytest.mark.django_db
def test_vital_table_rows_are_the_catalogs():
    assert query("SELECT name, good_max, poor_min, position FROM vital ORDER BY position") == [
        (v.name, float(v.good_max), float(v.poor_min), i) for i, v in enumerate(catalog.VITALS, 1)
    ]


@pytest.mark.django_db
def test_sql_stage_ranks_are_the_catalogs():
    names = [*catalog.CHAIN, "bogus"]
    rows = query(
        "SELECT s, _stage_rank(s), catalog_stage_rank(s) FROM unnest(%s::text[]) s", [names]
    )
    expected = {n: catalog.stage_rank(n) if n in catalog.LEDGER_STAGES else None for n in names}
    assert {name: rank for name, rank, _ in rows} == expected  # sql/functions/handoff.sql
    assert {name: rank for name, _, rank in rows} == expected


@pytest.mark.django_db
def test_sql_catalog_functions_return_the_catalog():
    assert query("SELECT ord, name FROM catalog_strategies()") == list(
        enumerate(catalog.STRATEGIES, 1)
    )
    assert query("SELECT ord, name, kind, strategy, vital FROM catalog_measures()") == [
        (i, m.name, m.kind, m.strategy, m.vital)
        for i, m in enumerate(catalog.aggregate_measures(), 1)
    ]
    stages = query("SELECT * FROM catalog_stages() ORDER BY rank")
    assert [row[:2] for row in stages] == list(enumerate(catalog.LEDGER_STAGES))
    for _rank, name, tables, sources, window, period, nxt, next_period, merged in stages:
        stage = catalog.STAGE[name]
        before = catalog.STAGES[catalog.CHAIN.index(name) - 1]
        assert (tuple(tables), tuple(sources)) == (stage.tables, before.tables)
        assert (window, period, nxt, merged) == (
            stage.window,
            stage.period,
            stage.next,
            stage.hist_merged,
        )
        assert next_period == (catalog.STAGE[nxt].period if nxt else None)


def _histogram_probes() -> list[float]:
    """Values where a bucket computation can go wrong: zero, negatives, subnormals, each
    side of bucket bounds, and the ranges of the vitals' values."""
    h = catalog.HISTOGRAM
    rng = random.Random(20240601)
    values = [0.0, -0.0, -1.0, -1e300, 5e-324, 1e-300, 1e-10, h.base / 2, h.base, 1e300]
    for k in range(0, 900, 7):
        bound = h.base * h.growth**k
        values += [bound, math.nextafter(bound, 0), math.nextafter(bound, math.inf)]
    values += [float(ms) for ms in range(0, 20001, 37)]  # millisecond vitals
    values += [i / 1000 for i in range(0, 1001)]  # CLS
    values += [10 ** rng.uniform(-6, 8) for _ in range(3000)]
    return values


@pytest.mark.django_db
def test_sql_hist_bucket_and_value_are_the_catalogs_histogram():
    h = catalog.HISTOGRAM
    values = _histogram_probes()
    rows = query("SELECT v, hist_bucket(v) FROM unnest(%s::float8[]) v", [values])
    assert [b for _, b in rows] == [h.bucket(v) for v in values]
    buckets = list(range(-3, 1200))
    rows = query("SELECT b, hist_value(b) FROM unnest(%s::int[]) b", [buckets])
    expected = [0.0 if b <= 0 else 2 * h.base * h.growth**b / (1 + h.growth) for b in buckets]
    assert [value for _, value in rows] == expected
    # And the Python computation is the bucket the declaration describes: bucket k >= 1
    # holds [base * growth^(k-1), base * growth^k) (up to the rounding of a bound), its
    # representative within (growth - 1) / (growth + 1) of every value in it.
    for v in values:
        k = h.bucket(v)
        if v <= 0:
            assert k == 0
            continue
        assert k >= 1
        low, high = h.base * h.growth ** (k - 1), h.base * h.growth**k
        assert v < high * (1 + 1e-12) and (k == 1 or v >= low * (1 - 1e-12)), (v, k)
        if k > 1:
            assert abs(h.value(k) - v) <= h.relative_error * v * (1 + 1e-9), (v, k)


@pytest.mark.django_db
def test_sync_puts_the_catalog_back_and_is_idempotent():
    assert reference.sync() == {"functions": [], "vitals": False, "schema": True}
    assert reference.prepare() == []
    with connection.cursor() as cursor:
        first = catalog.VITALS[0].name
        cursor.execute("UPDATE vital SET good_max = good_max + 1 WHERE name = %s", [first])
        cursor.execute("DELETE FROM vital WHERE name = %s", [catalog.VITALS[-1].name])
        cursor.execute("UPDATE vital SET position = 50 + position")
        cursor.execute("INSERT INTO vital VALUES ('retired', 1, 2, 1)")
        cursor.execute(
            "CREATE OR REPLACE FUNCTION hist_bucket(v double precision) RETURNS integer "
            "LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$"
        )
        cursor.execute("DROP FUNCTION catalog_strategies()")
        cursor.execute(
            "CREATE FUNCTION catalog_strategies() RETURNS TABLE (name text) "
            "LANGUAGE sql AS $$ SELECT 'mobile' $$"
        )
    changed = reference.sync()
    assert set(changed["functions"]) == {"hist_bucket", "catalog_strategies"}
    assert changed["vitals"] is True
    test_vital_table_rows_are_the_catalogs()
    test_sql_catalog_functions_return_the_catalog()
    assert query("SELECT hist_bucket(1.0)") == [(catalog.HISTOGRAM.bucket(1.0),)]
    assert reference.sync() == {"functions": [], "vitals": False, "schema": True}


@pytest.mark.django_db
def test_without_the_stage_schema_sync_leaves_no_catalog_function():
    names = [f.name for f in reference.functions()]
    present = "SELECT count(*) FROM pg_proc WHERE proname = ANY(%s)"
    assert query(present, [names]) == [(len(names),)]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE vital RENAME TO vital_gone")
    assert reference.sync()["schema"] is False
    assert query(present, [names]) == [(0,)]


@pytest.mark.slow
def test_migrate_writes_the_catalog_and_migrating_back_removes_it(scratch_database):
    env = {"DATABASE_URL": database_url(scratch_database)}
    names = [f.name for f in reference.functions()]

    def functions() -> set[str]:
        with psycopg.connect(admin_conninfo(scratch_database)) as conn:
            rows = conn.execute("SELECT proname FROM pg_proc WHERE proname = ANY(%s)", [names])
            return {name for (name,) in rows}

    run_manage("migrate", "--noinput", env=env)
    assert functions() == set(names)
    with psycopg.connect(admin_conninfo(scratch_database)) as conn:
        rows = conn.execute("SELECT name FROM vital ORDER BY position").fetchall()
        assert tuple(name for (name,) in rows) == catalog.VITAL_NAMES
        assert conn.execute("SELECT hist_bucket(2500)").fetchone() == (
            catalog.HISTOGRAM.bucket(2500),
        )
    run_manage("migrate", "reporting", "zero", "--noinput", env=env)
    run_manage("migrate", "pipeline", "zero", "--noinput", env=env)
    assert functions() == set()


@pytest.mark.django_db
def test_a_vital_added_later_has_its_columns_where_alter_table_appends_them(monkeypatch):
    """docs/architecture.md, "One declaration": a new vital's schema file appends its
    columns to the tables, per strategy; the catalog's column order is then the tables'."""
    added = catalog.Vital("tbt_ms", 200, 600, "ms", added_by="NNNN_vital_tbt_ms.sql")
    monkeypatch.setattr(catalog, "_APPENDED_VITALS", (added,))
    monkeypatch.setattr(catalog, "VITALS", (*catalog.VITALS, added))
    with connection.cursor() as cursor:
        for strategy in catalog.STRATEGIES:
            cursor.execute(
                f"ALTER TABLE agg_interval ADD COLUMN {strategy}_tbt_ms_n integer NOT NULL "
                f"DEFAULT 0, ADD COLUMN {strategy}_tbt_ms_good integer NOT NULL DEFAULT 0, "
                f"ADD COLUMN {strategy}_tbt_ms_poor integer NOT NULL DEFAULT 0, "
                f"ADD COLUMN {strategy}_tbt_ms_hist bigint[]"
            )
        for strategy in catalog.STRATEGIES:
            cursor.execute(f"ALTER TABLE page_hour ADD COLUMN {strategy}_tbt_ms double precision")
    assert list(typed_columns("agg_interval").items()) == list(
        catalog.aggregate_column_types("agg_interval").items()
    )
    assert list(typed_columns("page_hour"))[-2 * len(catalog.VITALS) - 2 :] == list(
        catalog.page_hour_performance_columns()
    )
