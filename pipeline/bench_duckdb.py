"""DuckDB over the pipeline benchmark's files, for comparison (``pipeline/bench.py``).

``run(ga_path, psi_path)`` reads a GA and a PSI file of the contract's JSON-array
layout into an in-memory DuckDB (2 threads by default) and computes, per page,
the daily and the monthly roll-up that Metriflow's ``agg_daily`` and
``agg_monthly`` hold: records deduplicated last-wins per natural key (GA: page
and hour; PSI: page, UTC hour of ``measured_at`` and strategy; the last is the
latest position in the file), pages canonicalised (CONTRACT section 1), then
per (page, period) the traffic sums and per strategy the samples, the score
average and per vital n, good, poor and the exact nearest-rank p50/p75/p95
(``quantile_disc``, which is nearest-rank: the value at rank ceil(p * n)).
Every table is materialised (``CREATE TABLE ... AS``), so the time covers the
whole computation, from reading the files to both roll-ups done.

What it does not do, and Metriflow does: nothing is durable (the database is
gone with the connection), nothing is incremental (a late record means reading
and recomputing everything), records are not validated (the files are taken to
be valid, as the benchmark's are: no malformed records), no rejects, no
ledger, no interval or yearly level, no site roll-up, and host names are
lower-cased but not IDNA-mapped (the generated files hold ASCII hosts only).

``first_difference`` compares the integer columns of a roll-up with
Metriflow's table of the same level: counts and integer sums only (float sums
are not compared), keyed by canonical URL and period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from pipeline.catalog import (
    COUNT,
    STRATEGIES,
    SUM,
    TRAFFIC,
    TRAFFIC_NAMES,
    VITALS,
    aggregate_measures,
)

PERCENTILES = (0.5, 0.75, 0.95)
LEVELS = {"daily": "day", "monthly": "month"}  # DuckDB table -> date_trunc unit
METRIFLOW_TABLES = {"daily": "agg_daily", "monthly": "agg_monthly"}
# What the benchmark compares per page-month: two traffic sums and every vital's n.
AGREEMENT_COLUMNS = ("users", "views", *(f"{s}_{v.name}_n" for s in STRATEGIES for v in VITALS))


def integer_columns() -> tuple[str, ...]:
    """The aggregate tables' integer sums and counts (Metriflow's and DuckDB's names)."""
    return tuple(m.name for m in aggregate_measures() if m.kind in (SUM, COUNT))


def percentile_columns() -> tuple[str, ...]:
    """DuckDB's percentile columns: ``<strategy>_<vital>_p50`` and so on."""
    return tuple(
        f"{s}_{v.name}_p{round(p * 100)}" for s in STRATEGIES for v in VITALS for p in PERCENTILES
    )


@dataclass
class DuckRun:
    """An in-memory DuckDB holding the tables ``ga``, ``psi``, ``daily`` and ``monthly``."""

    connection: duckdb.DuckDBPyConnection
    seconds: float  # from reading the files to both roll-ups materialised
    threads: int

    def rows(self, level: str, columns: tuple[str, ...]) -> dict[tuple[str, datetime], tuple]:
        """``columns`` of every (url, period_start) of ``level`` (naive UTC period starts)."""
        if level not in LEVELS:
            raise ValueError(f"not a DuckDB roll-up: {level!r} (one of {tuple(LEVELS)})")
        selected = ", ".join(columns)
        return {
            (url, period): tuple(values)
            for url, period, *values in self.connection.execute(
                f"SELECT url, period_start, {selected} FROM {level}"
            ).fetchall()
        }

    def count(self, level: str) -> int:
        """The rows of ``level`` (page-days or page-months)."""
        if level not in LEVELS:
            raise ValueError(f"not a DuckDB roll-up: {level!r} (one of {tuple(LEVELS)})")
        return self.connection.execute(f"SELECT count(*) FROM {level}").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


# The generated files spell 2% of their URLs non-canonically (loadgen's
# --url-variants: upper-case host or scheme, :443, trailing slash, query,
# fragment), so pages are canonicalised here as ingestion does.
# Canonical page (CONTRACT section 1) of every distinct spelling in the files:
# lower-case scheme and host, user information and a trailing dot of the host
# dropped, default port dropped, query and fragment dropped, trailing slashes
# dropped except for the root path.
_SPELLINGS = r"""
CREATE TABLE spelling AS
WITH spelled AS (
    SELECT DISTINCT page FROM ga_file UNION SELECT DISTINCT page FROM psi_file
), parts AS (
    SELECT page, regexp_extract(
        page, '^([A-Za-z][A-Za-z0-9+.-]*)://(?:[^@/?#]*@)?([^/?#:]*)(?::([0-9]*))?([^?#]*)',
        ['scheme', 'host', 'port', 'path']) AS p
    FROM spelled
)
SELECT page,
       lower(p.scheme) || '://' || regexp_replace(lower(p.host), '\.$', '')
       || CASE WHEN p.port = ''
                 OR TRY_CAST(p.port AS INTEGER) = CASE lower(p.scheme) WHEN 'https' THEN 443
                                                                         ELSE 80 END
               THEN '' ELSE ':' || TRY_CAST(p.port AS INTEGER) END
       || coalesce(nullif(rtrim(p.path, '/'), ''), '/') AS url
FROM parts
"""


def _ga_file_sql() -> str:
    traffic = ", ".join(f"{m.name}: '{'BIGINT' if m.kind == SUM else 'DOUBLE'}'" for m in TRAFFIC)
    return f"""
CREATE TABLE ga_file AS SELECT * FROM read_json(?, format = 'array', columns = {{
    page: 'VARCHAR', hour: 'TIMESTAMPTZ', {traffic}}})
"""


def _psi_file_sql() -> str:
    vitals = ", ".join(f"{v.name}: 'DOUBLE'" for v in VITALS)
    return f"""
CREATE TABLE psi_file AS SELECT * FROM read_json(?, format = 'array', columns = {{
    page: 'VARCHAR', measured_at: 'TIMESTAMPTZ', strategy: 'VARCHAR',
    performance_score: 'DOUBLE', {vitals}}})
"""


# Last wins per natural key: rowid is the position in the file (the tables are
# filled in file order: preserve_insertion_order, DuckDB's default).
def _ga_sql() -> str:
    fields = ", ".join(f"{name}: f.{name}" for name in TRAFFIC_NAMES)
    columns = ", ".join(f"r.{name}" for name in TRAFFIC_NAMES)
    return f"""
CREATE TABLE ga AS
SELECT url, hour, {columns}
FROM (
    SELECT s.url, date_trunc('hour', f.hour::TIMESTAMP) AS hour,
           arg_max({{{fields}}}, f.rowid) AS r
    FROM ga_file f JOIN spelling s USING (page)
    GROUP BY ALL
)
"""


def _psi_sql() -> str:
    fields = ", ".join(f"{v.name}: f.{v.name}" for v in VITALS)
    columns = ", ".join(f"r.{v.name}" for v in VITALS)
    return f"""
CREATE TABLE psi AS
SELECT url, hour, strategy, r.performance_score, {columns}
FROM (
    SELECT s.url, date_trunc('hour', f.measured_at::TIMESTAMP) AS hour, f.strategy,
           arg_max({{performance_score: f.performance_score, {fields}}}, f.rowid) AS r
    FROM psi_file f JOIN spelling s USING (page)
    GROUP BY ALL
)
"""


def _roll_up_sql(level: str) -> str:
    unit = LEVELS[level]
    performance = []
    for strategy in STRATEGIES:
        only = f"FILTER (WHERE strategy = '{strategy}')"
        performance.append(f"count(*) {only} AS {strategy}_samples")
        performance.append(f"avg(performance_score) {only} AS {strategy}_score_avg")
        for v in VITALS:
            name = f"{strategy}_{v.name}"
            # Thresholds as DOUBLE literals: a DECIMAL 0.1 would round the values compared.
            good, poor = f"{float(v.good_max)!r}::DOUBLE", f"{float(v.poor_min)!r}::DOUBLE"
            of = f"WHERE strategy = '{strategy}' AND {v.name}"
            performance.append(f"count({v.name}) {only} AS {name}_n")
            performance.append(f"count(*) FILTER ({of} <= {good}) AS {name}_good")
            performance.append(f"count(*) FILTER ({of} > {poor}) AS {name}_poor")
            performance.append(f"quantile_disc({v.name}, {list(PERCENTILES)}) {only} AS {name}_q")
    traffic_columns = TRAFFIC_NAMES
    traffic = ", ".join(f"sum({c}) AS {c}" for c in traffic_columns)
    integers = [c for c in integer_columns() if c not in ("traffic_hours", *traffic_columns)]
    spread = ", ".join(
        f"q.{s}_{v.name}_q[{i + 1}] AS {s}_{v.name}_p{round(p * 100)}"
        for s in STRATEGIES
        for v in VITALS
        for i, p in enumerate(PERCENTILES)
    )
    return f"""
CREATE TABLE {level} AS
WITH t AS (
    SELECT url, date_trunc('{unit}', hour) AS period_start, count(*) AS traffic_hours, {traffic}
    FROM ga GROUP BY ALL
), q AS (
    SELECT url, date_trunc('{unit}', hour) AS period_start, {", ".join(performance)}
    FROM psi GROUP BY ALL
)
SELECT url, period_start,
       coalesce(t.traffic_hours, 0) AS traffic_hours,
       {", ".join(f"coalesce(t.{c}, 0) AS {c}" for c in traffic_columns)},
       {", ".join(f"coalesce(q.{c}, 0) AS {c}" for c in integers)},
       {", ".join(f"q.{s}_score_avg" for s in STRATEGIES)},
       {spread}
FROM t FULL OUTER JOIN q USING (url, period_start)
"""


def run(ga_path: str | Path, psi_path: str | Path, threads: int = 2) -> DuckRun:
    """Both files into an in-memory DuckDB, deduplicated and rolled up daily and monthly."""
    for path in (ga_path, psi_path):
        if not Path(path).is_file():
            raise FileNotFoundError(f"DuckDB comparison: no such file {path}")
    connection = duckdb.connect(":memory:")
    connection.execute(f"SET threads = {int(threads)}")
    connection.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ -> TIMESTAMP gives UTC
    connection.execute("SET preserve_insertion_order = true")
    started = time.perf_counter()
    connection.execute(_ga_file_sql(), [str(ga_path)])
    connection.execute(_psi_file_sql(), [str(psi_path)])
    connection.execute(_SPELLINGS)
    connection.execute(_ga_sql())
    connection.execute(_psi_sql())
    for level in LEVELS:
        connection.execute(_roll_up_sql(level))
    seconds = time.perf_counter() - started
    return DuckRun(connection, seconds, threads)


def metriflow_rows(cursor, level: str, columns: tuple[str, ...]) -> dict:
    """``columns`` of Metriflow's table of ``level``, keyed like ``DuckRun.rows``."""
    selected = ", ".join(f"a.{c}" for c in columns)
    cursor.execute(
        f"SELECT p.url, a.period_start AT TIME ZONE 'UTC', {selected} "
        f"FROM {METRIFLOW_TABLES[level]} a JOIN page p ON p.id = a.page_id"
    )
    return {(url, period): tuple(values) for url, period, *values in cursor.fetchall()}


def first_difference(duck: DuckRun, cursor, level: str, columns: tuple[str, ...]) -> str | None:
    """The first (page, period, column) where DuckDB and Metriflow differ, None if none does.

    Only integer columns (sums and counts) are meaningful here: they compare exactly.
    """
    theirs = duck.rows(level, columns)
    ours = metriflow_rows(cursor, level, columns)
    for key in sorted(theirs.keys() | ours.keys()):
        url, period = key
        if key not in ours:
            return f"{url} {period:%Y-%m-%d}: in DuckDB only"
        if key not in theirs:
            return f"{url} {period:%Y-%m-%d}: in Metriflow only"
        for column, mine, other in zip(columns, ours[key], theirs[key], strict=True):
            if mine != other:
                return f"{url} {period:%Y-%m-%d} {column}: DuckDB {other}, Metriflow {mine}"
    return None
