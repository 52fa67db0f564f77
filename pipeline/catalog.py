"""The one declaration of Metriflow's stages and measures.

Everything that names a stage, a strategy, a vital, a stored measure or a
histogram constant derives from this module: the Celery queues and routes
(``metriflow/celery.py``), the stage order, next stage and window unit
(``pipeline/stages.py``), each stage's tables (``pipeline/selectors.py``), the
report models' fields (``reporting/models.py``), the metrics' constants
(``reporting/metrics.py``) and, at every ``migrate``, the database's reference
data: the ``vital`` table and the SQL functions ``catalog_strategies()``,
``catalog_stage_rank(text)``, ``hist_bucket(double precision)`` and
``hist_value(integer)`` (``pipeline/reference.py``), and the stage statements
that list the measures (``pipeline/stage_sql.py``). ``tests/test_catalog.py``
fails when any copy disagrees, the aggregate tables' columns included.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

# ------------------------------------------------------------------ histograms


@dataclass(frozen=True)
class Histogram:
    """Sparse log buckets of the web-vital histograms (docs/metrics.md).

    Bucket 0 holds values <= 0; bucket k >= 1 holds [base * growth^(k-1),
    base * growth^k) (values below ``base`` fall in bucket 1). A bucket's
    representative is 2lu/(l+u) of its bounds, ``2 * base * growth^k / (1 +
    growth)``: the same relative error at both ends, (growth - 1) / (growth + 1).
    A histogram element is ``(bucket << 32) + count``, the count a signed 32-bit number
    (a delta's elements take values away).
    """

    base: float
    growth: float

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.growth > 1):
            raise ValueError(f"histogram needs base > 0 and growth > 1, got {self}")

    def bucket(self, value: float) -> int:
        """The bucket of ``value``, as SQL's ``hist_bucket`` computes it."""
        if value <= 0:
            return 0
        return max(1, math.floor(math.log(value / self.base) / math.log(self.growth)) + 1)

    def value(self, bucket: int) -> float:
        """The representative of ``bucket``, as SQL's ``hist_value`` computes it."""
        if bucket <= 0:
            return 0.0
        return 2 * self.base * self.growth**bucket / (1 + self.growth)

    @property
    def relative_error(self) -> float:
        """The largest relative error of a representative against a value of its bucket."""
        return (self.growth - 1) / (self.growth + 1)


HISTOGRAM = Histogram(base=1e-4, growth=1.04)

# ------------------------------------------------------------------ stages


@dataclass(frozen=True)
class Stage:
    """One link of the chain.

    ``window``: the unit of the time window one run works on (``month`` or
    ``year``), None for ``raw`` (one file) and ``staged`` (one ingest batch).
    ``period``: the period of one row (and dirty key) of its tables.
    ``queue``: the Celery queue its task (``pipeline.stage.<name>``) runs on.
    ``ledger``: whether its runs are recorded in ``pipeline_ledger`` (every stage
    but ``raw``, which is ingestion itself).
    ``hist_merged``: whether its histograms hold one element per bucket.
    """

    name: str
    tables: tuple[str, ...]
    window: str | None
    period: str | None
    next: str | None
    queue: str
    ledger: bool = True
    hist_merged: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("raw", ("raw_ga", "raw_psi"), None, None, "staged", "raw", ledger=False),
    Stage("staged", ("staged_ga", "staged_psi"), None, "hour", "page", "staged"),
    Stage("page", ("page_hour",), "month", "hour", "interval", "page"),
    Stage("interval", ("agg_interval",), "month", "interval", "daily", "interval"),
    Stage("daily", ("agg_daily",), "month", "day", "monthly", "daily"),
    Stage("monthly", ("agg_monthly",), "year", "month", "yearly", "monthly", hist_merged=True),
    Stage("yearly", ("agg_yearly",), "year", "year", None, "yearly", hist_merged=True),
)
STAGE = {stage.name: stage for stage in STAGES}

# The daily stage also rolls all pages of a site up per day (histograms merged).
SITE_DAILY_TABLE = "agg_site_daily"

# Names derived from STAGES, in chain order.
CHAIN = tuple(stage.name for stage in STAGES)  # every stage, raw first
LEDGER_STAGES = tuple(stage.name for stage in STAGES if stage.ledger)  # staged .. yearly
TIME_STAGES = tuple(stage.name for stage in STAGES if stage.window)  # page .. yearly
NEXT_STAGE = {stage.name: stage.next for stage in STAGES if stage.ledger}
WINDOW_UNIT = {stage.name: stage.window for stage in STAGES if stage.window}
QUEUES = tuple(dict.fromkeys(stage.queue for stage in STAGES))
STAGE_TABLES = {stage.name: stage.tables for stage in STAGES}
AGGREGATE_TABLES = (
    *(table for stage in STAGES if stage.period in ("interval", "day", "month", "year")
      for table in stage.tables),
    SITE_DAILY_TABLE,
)  # fmt: skip


def stage_rank(name: str) -> int:
    """The position of a ledger stage in the chain, ``staged`` = 0 (SQL ``_stage_rank``)."""
    try:
        return LEDGER_STAGES.index(name)
    except ValueError:
        raise ValueError(f"not a pipeline stage: {name!r} (one of {LEDGER_STAGES})") from None


_NAME = re.compile(r"[a-z][a-z0-9_]*")  # names become SQL identifiers and literals


def _check_names(kind: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{kind} name {name!r} is not a lowercase identifier")
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} names repeat: {names}")


def _check_stages() -> None:
    _check_names("stage", tuple(STAGE))
    _check_names("stage", CHAIN)
    _check_names("table", tuple(t for stage in STAGES for t in stage.tables))
    for before, after in itertools.pairwise(STAGES):
        if before.next != after.name:
            raise ValueError(f"stage {before.name} must hand off to {after.name}")
    if STAGES[-1].next is not None:
        raise ValueError("the last stage hands off to nothing")


_check_stages()

# ------------------------------------------------------------------ measures

STRATEGIES = ("mobile", "desktop")  # PSI's strategies, in column order


@dataclass(frozen=True)
class Vital:
    """A web vital: good is ``value <= good_max``, poor is ``value > poor_min``.

    ``precision``: the kind of decimals its percentiles get (``reporting.metrics.PRECISION``).
    ``added_by``: None for the vitals of the tables as first created (their columns sit in
    each strategy's block); for a vital declared later, the schema file that appended its
    columns to the tables (``ALTER TABLE ... ADD COLUMN``, after every earlier column).
    """

    name: str
    good_max: float
    poor_min: float
    precision: str
    added_by: str | None = None

    def __post_init__(self) -> None:
        if not self.good_max <= self.poor_min:
            raise ValueError(f"vital {self.name}: good_max must not exceed poor_min")


VITALS: tuple[Vital, ...] = (
    Vital("lcp_ms", 2500, 4000, "ms"),
    Vital("fcp_ms", 1800, 3000, "ms"),
    Vital("inp_ms", 200, 500, "ms"),
    Vital("ttfb_ms", 800, 1800, "ms"),
    Vital("cls", 0.1, 0.25, "cls"),
)
VITAL = {vital.name: vital for vital in VITALS}
_FIRST_VITALS = tuple(vital for vital in VITALS if vital.added_by is None)
_APPENDED_VITALS = tuple(vital for vital in VITALS if vital.added_by is not None)
VITAL_NAMES = tuple(vital.name for vital in VITALS)
THRESHOLDS = {vital.name: (vital.good_max, vital.poor_min) for vital in VITALS}

# Kinds of stored measures, and what each is in the aggregate tables.
SUM = "sum"  # an integer sum (bigint)
EXACT_SUM = "exact_sum"  # an exact sum of floats
COUNT = "count"  # a count of rows or samples (integer)
HIST = "hist"  # a histogram, bigint[] of elements (bucket << 32) + count
KINDS = (SUM, EXACT_SUM, COUNT, HIST)
# How the aggregate tables store each kind (sql/schema; as format_type() spells it). An
# exact sum is a decimal to a millionth: every value is summed rounded to a millionth,
# and deltas add to a stored sum without rounding.
SQL_TYPES = {SUM: "bigint", EXACT_SUM: "numeric(1000,6)", COUNT: "integer", HIST: "bigint[]"}


@dataclass(frozen=True)
class Measure:
    """One stored column of the aggregate tables."""

    name: str
    kind: str
    strategy: str | None = None
    vital: str | None = None


# GA's traffic sums (page_hour holds the hour's values under the same names).
TRAFFIC: tuple[Measure, ...] = (
    Measure("users", SUM),
    Measure("sessions", SUM),
    Measure("views", SUM),
    Measure("bounces", SUM),
    Measure("engagement_seconds", EXACT_SUM),
)
TRAFFIC_NAMES = tuple(m.name for m in TRAFFIC)
TRAFFIC_HOURS = Measure("traffic_hours", COUNT)  # page-hours with a GA record

# Per strategy: samples (PSI records) and the sum of their performance scores.
STRATEGY_MEASURES = (("samples", COUNT), ("score_sum", EXACT_SUM))
# Per strategy and vital: the non-null count, the good and poor counts
# (needs improvement = n - good - poor) and the histogram.
VITAL_MEASURES = (("n", COUNT), ("good", COUNT), ("poor", COUNT), ("hist", HIST))

AGGREGATE_KEYS = ("period_start", "page_id", "site_id")  # agg_site_daily: no page_id
KEY_SQL_TYPES = {"period_start": "timestamp with time zone", "page_id": "integer",
                 "site_id": "integer"}  # fmt: skip
SCORE = "score"  # page_hour's per-strategy performance score: <strategy>_score


def aggregate_measures() -> tuple[Measure, ...]:
    """The stored measures of every aggregate table, in table order."""

    def of_vital(strategy: str, vital: Vital) -> list[Measure]:
        return [
            Measure(f"{strategy}_{vital.name}_{suffix}", kind, strategy, vital.name)
            for suffix, kind in VITAL_MEASURES
        ]

    measures = [TRAFFIC_HOURS, *TRAFFIC]
    for strategy in STRATEGIES:
        for suffix, kind in STRATEGY_MEASURES:
            measures.append(Measure(f"{strategy}_{suffix}", kind, strategy))
        for vital in _FIRST_VITALS:
            measures += of_vital(strategy, vital)
    for vital in _APPENDED_VITALS:
        for strategy in STRATEGIES:
            measures += of_vital(strategy, vital)
    return tuple(measures)


def aggregate_columns(table: str = "agg_interval") -> tuple[str, ...]:
    """The columns of an aggregate table, keys first, in table order."""
    if table not in AGGREGATE_TABLES:
        raise ValueError(f"not an aggregate table: {table!r} (one of {AGGREGATE_TABLES})")
    keys = tuple(k for k in AGGREGATE_KEYS if not (table == SITE_DAILY_TABLE and k == "page_id"))
    return (*keys, *(m.name for m in aggregate_measures()))


def aggregate_column_types(table: str = "agg_interval") -> dict[str, str]:
    """Each column of an aggregate table with its SQL type, in table order."""
    types = KEY_SQL_TYPES | {m.name: SQL_TYPES[m.kind] for m in aggregate_measures()}
    return {column: types[column] for column in aggregate_columns(table)}


def page_hour_performance_columns() -> tuple[str, ...]:
    """page_hour's PSI columns, in table order: per strategy the score, then each vital
    (a vital added later: per strategy, after them all)."""
    return (
        *(
            name
            for strategy in STRATEGIES
            for name in (f"{strategy}_{SCORE}", *(f"{strategy}_{v.name}" for v in _FIRST_VITALS))
        ),
        *(f"{strategy}_{v.name}" for v in _APPENDED_VITALS for strategy in STRATEGIES),
    )


def _check_measures() -> None:
    _check_names("strategy", STRATEGIES)
    _check_names("vital", VITAL_NAMES)
    if VITALS[: len(_FIRST_VITALS)] != _FIRST_VITALS:
        raise ValueError("a vital added to the tables later is declared after the first ones")
    _check_names("column", aggregate_columns() + page_hour_performance_columns())
    for measure in aggregate_measures():
        if measure.kind not in KINDS:
            raise ValueError(f"measure {measure.name}: unknown kind {measure.kind!r}")


_check_measures()
