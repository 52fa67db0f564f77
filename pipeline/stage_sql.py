"""The stage statements that list the catalog's columns, as plain SQL.

Each statement whose column lists come from the catalog (``pipeline/catalog.py``:
the measures, strategies and vitals) is composed here once, with ``psycopg.sql``,
and stored at ``migrate`` as a PL/pgSQL function of its own whose body is that one
static statement (``pipeline/reference.py`` creates and replaces them with the
catalog's other functions). The stage procedures in ``sql/functions/stages.sql``
call them; no stage assembles SQL text while it runs. ``\\sf _interval_upsert``
in psql shows the statement a stage runs, and ``tests/test_stage_sql.py``
snapshots every statement each stage executes.

The staged stage's statements per source, the page stage's, and the interval and roll-up
stages' (upserts, first loads, deltas, site-days) are here, and the choice among a
roll-up's statements by the stage's name (``_rollup_upsert`` and the like). Every
statement function returns the statement's row count, plans with the values of its
call (``plan_cache_mode = force_custom_plan``: a window's bounds decide between
an index range scan and a whole read), and reads the temporary tables the
calling stage fills (``_stage_keys``, ``_stage_ranges``, ``_rollup_keys``,
``_deltas``, ``_site_days``, ``_page_old``, ``_page_new``), resolved when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from . import catalog


@dataclass(frozen=True)
class Statement:
    """One stage statement: ``signature`` as ``CREATE FUNCTION`` takes it. The function
    returns the statement's row count, or, with ``OUT`` parameters in the signature,
    what the statement selects ``INTO`` them."""

    signature: str
    comment: str
    statement: sql.Composable

    @property
    def name(self) -> str:
        return self.signature.split("(", 1)[0]

    @property
    def counted(self) -> bool:
        return " OUT " not in f" {self.signature.split('(', 1)[1].replace(',', ' ')}"

    @property
    def body(self) -> str:
        lines = "\n".join(f"    -- {line}" for line in self.comment.splitlines())
        text = self.statement.as_string(None).strip()
        head = f"\n    -- Generated from pipeline/catalog.py by pipeline/stage_sql.py.\n{lines}\n"
        if not self.counted:
            return f"{head}BEGIN\n    {text};\nEND\n"
        return (
            f"{head}DECLARE\n    v_rows bigint;\nBEGIN\n"
            f"    {text};\n"
            "    GET DIAGNOSTICS v_rows = ROW_COUNT;\n    RETURN v_rows;\nEND\n"
        )

    def create_sql(self) -> str:
        returns = "bigint" if self.counted else "record"
        return (
            f"CREATE OR REPLACE FUNCTION {self.signature} RETURNS {returns}\n"
            "LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan "
            f"AS $statement${self.body}$statement$"
        )


@dataclass(frozen=True)
class Dispatch:
    """A stage's generated statement chosen by the stage's name, for the procedures
    shared by several stages (``_stage_rollup``, ``_take_deltas``): one ``CASE`` branch
    per stage of the catalog; another name raises ``case_not_found``."""

    signature: str
    comment: str
    returns: str
    cases: tuple[tuple[str, sql.Composable], ...]  # (stage, the expression returned)

    @property
    def name(self) -> str:
        return self.signature.split("(", 1)[0]

    @property
    def body(self) -> str:
        lines = "\n".join(f"    -- {line}" for line in self.comment.splitlines())
        branches = "".join(
            f"        WHEN {sql.Literal(stage).as_string(None)} THEN "
            f"RETURN {expression.as_string(None)};\n"
            for stage, expression in self.cases
        )
        return (
            f"\n    -- Generated from pipeline/catalog.py by pipeline/stage_sql.py.\n{lines}\n"
            f"BEGIN\n    CASE p_stage\n{branches}    END CASE;\nEND\n"
        )

    def create_sql(self) -> str:
        return (
            f"CREATE OR REPLACE FUNCTION {self.signature} RETURNS {self.returns}\n"
            f"LANGUAGE plpgsql AS $statement${self.body}$statement$"
        )


def _q(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def _list(items) -> sql.Composed:
    return sql.SQL(", ").join(items)


def _number(value: float) -> sql.SQL:
    # A threshold as a numeric literal: what the vital table's double precision prints.
    text = repr(float(value))
    return sql.SQL(text.removesuffix(".0"))


# ------------------------------------------------------------ column lists


def _measures() -> tuple[catalog.Measure, ...]:
    return catalog.aggregate_measures()


# Read from catalog.VITALS when called, as aggregate_measures() does.
def _vital_names() -> tuple[str, ...]:
    return tuple(v.name for v in catalog.VITALS)


def _vital(name: str) -> catalog.Vital:
    return next(v for v in catalog.VITALS if v.name == name)


def _columns(prefix: str | None = None) -> sql.Composed:
    """The aggregate columns after the keys, in table order (``prefix.`` each)."""
    return _list(_q(prefix, m.name) if prefix else _q(m.name) for m in _measures())


def _page_hour_columns() -> tuple[str, ...]:
    """page_hour's columns after its key, in table order."""
    return (*catalog.TRAFFIC_NAMES, *catalog.page_hour_performance_columns())


def _source(measure: catalog.Measure) -> sql.Identifier:
    """A measure's page_hour column (alias a)."""
    if measure.vital is not None:
        name = f"{measure.strategy}_{measure.vital}"
    elif measure.strategy is not None:
        name = f"{measure.strategy}_{catalog.SCORE}"
    elif measure == catalog.TRAFFIC_HOURS:
        name = "users"  # the hours with a GA record
    else:
        name = measure.name
    return _q("a", name)


def _exact_sum(value: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "exact_numeric(coalesce(sum(trunc({v})), 0)) "
        "+ exact_numeric(coalesce(sum(round(({v} - trunc({v})) * 1e6)), 0)) * 0.000001"
    ).format(v=value)


def _count(signed: bool, condition: sql.Composable, column: sql.Composable | None = None):
    if signed:
        return sql.SQL("coalesce(sum(a.sign) FILTER (WHERE {}), 0)").format(condition)
    if column is not None:
        return sql.SQL("count({})").format(column)
    return sql.SQL("count(*) FILTER (WHERE {})").format(condition)


def measure_select(signed: bool) -> sql.Composed:
    """The SELECT list of one aggregate row from page_hour rows (alias a), in table
    order. ``signed``: every row carries ``a.sign``, +1 for a row's new version and -1
    for its old one, and the list is their difference (a delta): counts become sums of
    signs, histogram elements carry the sign as their count, float values are
    multiplied by it (trunc and round are odd functions: the exact sums stay exact)."""
    items = []
    for m in _measures():
        src = _source(m)
        if m.kind == catalog.HIST:
            expr = sql.SQL(
                "array_agg((hist_bucket({s})::bigint << 32) + {c}) FILTER (WHERE {s} IS NOT NULL)"
            ).format(s=src, c=sql.SQL("a.sign::bigint" if signed else "1"))
        elif m.kind == catalog.EXACT_SUM:
            expr = _exact_sum(sql.SQL("a.sign * {}").format(src) if signed else src)
        elif m.kind == catalog.SUM:
            expr = sql.SQL("coalesce(sum({}{}), 0)").format(
                sql.SQL("a.sign * " if signed else ""), src
            )
        elif m.vital is not None and m.name.endswith("_good"):
            good_max = _vital(m.vital).good_max
            expr = _count(signed, sql.SQL("{} <= {}").format(src, _number(good_max)))
        elif m.vital is not None and m.name.endswith("_poor"):
            poor_min = _vital(m.vital).poor_min
            expr = _count(signed, sql.SQL("{} > {}").format(src, _number(poor_min)))
        else:
            expr = _count(signed, sql.SQL("{} IS NOT NULL").format(src), src)
        items.append(sql.SQL("{} AS {}").format(expr, _q(m.name)))
    return _list(items)


def rollup_aggregates(hist: str) -> sql.Composed:
    """The aggregates of a roll-up row from finer aggregate rows (alias a): sums add,
    histograms combine with ``hist`` (``hist_cat_agg`` or ``hist_merge_agg``).
    Order-independent: a rerun gives the same value whatever order rows are read in."""
    return _list(
        sql.SQL("{}({})").format(sql.SQL(hist), _q("a", m.name))
        if m.kind == catalog.HIST
        else sql.SQL("sum({})").format(_q("a", m.name))
        for m in _measures()
    )


def _conflict_update(columns) -> sql.Composed:
    return _list(sql.SQL("{0} = EXCLUDED.{0}").format(_q(c)) for c in columns)


def _delta_update() -> sql.Composed:
    """Adds a delta row to a stored row: counts and sums add, histograms append."""
    return _list(
        sql.SQL(
            "{0} = hist_add(t.{0}, EXCLUDED.{0})"
            if m.kind == catalog.HIST
            else "{0} = t.{0} + EXCLUDED.{0}"
        ).format(_q(m.name))
        for m in _measures()
    )


# ------------------------------------------------------------ the staged stage


@dataclass(frozen=True)
class _Source:
    """How the staged stage keys and orders one source's records."""

    name: str  # ga, psi
    hour: str  # the record's UTC hour, over the raw table's columns
    time: str  # the raw column the hour comes from
    keys: tuple[str, ...]  # the natural key after page and hour
    carried: tuple[str, ...]  # columns kept as they are besides the values
    values: tuple[str, ...]  # the measured values
    order: str  # the key order as one bigint, which a sort compares in one step


def _sources() -> tuple[_Source, ...]:
    return (
        _Source("ga", "hour", "hour", (), (), catalog.TRAFFIC_NAMES,
                "(page_id::bigint << 32) + floor(date_part('epoch', hour) / 3600)::bigint"),
        _Source("psi", "utc_trunc('hour', measured_at)", "measured_at", ("strategy",),
                ("measured_at",), ("performance_score", *_vital_names()),
                "(page_id::bigint << 32)"
                " + (floor(date_part('epoch', measured_at) / 3600)::bigint << 1)"
                " + (strategy = 'mobile')::integer"),
    )  # fmt: skip


def _staged_statements(source: _Source) -> list[Statement]:
    """The staged stage's statements for one source."""
    staged, raw = f"staged_{source.name}", f"raw_{source.name}"
    hour = sql.SQL(source.hour)
    kept = (*source.keys, *source.carried, *source.values, "batch_id", "position")
    columns = _list(_q(c) for c in ("hour", "page_id", *kept))
    selected = _list([hour, _q("page_id"), *(_q(c) for c in kept)])
    natural = _list([_q("page_id"), hour, *(_q(k) for k in source.keys)])
    same_key = sql.SQL(" AND ").join(
        sql.SQL("s.{0} = src.{0}").format(_q(c)) for c in ("page_id", "hour", *source.keys)
    )
    into = sql.SQL("INSERT INTO {} ({})").format(_q(staged), columns)
    # The page stage's dirty marks: each changed (page, day) with its hours in the mask.
    mark = sql.SQL("""INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', {t}), page_id, bit_or(hour_bit({t}))
    FROM {rows} GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours""")
    return [
        Statement(
            f"_{staged}_rebuild()",
            f"{staged} rebuilt from raw after a crash emptied it (staged_ensure): the last\n"
            "record per natural key of the batches in _staged_batches.",
            sql.SQL("""{into}
    SELECT DISTINCT ON ({natural}) {selected}
    FROM {raw} WHERE batch_id IN (SELECT batch_id FROM _staged_batches)
    ORDER BY {natural}, batch_id DESC, position DESC""").format(
                into=into, natural=natural, selected=selected, raw=_q(raw)
            ),
        ),
        Statement(
            f"_{staged}_insert_batch(p_batch bigint)",
            "The fast path: every raw row of a batch whose keys are all new, in key order\n"
            "as one bigint, which the sort compares in one step (13M PSI rows: 14.1 -> 7.7 s).",
            sql.SQL("""{into}
    SELECT {selected}
    FROM {raw} WHERE batch_id = p_batch
    ORDER BY {order}""").format(
                into=into, selected=selected, raw=_q(raw), order=sql.SQL(source.order)
            ),
        ),
        Statement(
            f"_{staged}_mark_batch(p_batch bigint)",
            "The fast path's dirty marks: every (page, day) of the batch's records.",
            mark.format(
                t=_q(source.time), rows=sql.SQL("{} WHERE batch_id = p_batch").format(_q(raw))
            ),
        ),
        Statement(
            f"_{staged}_dedup(p_batch bigint, OUT rows_in bigint, OUT rows_out bigint)",
            "The general path: the batch's last record per key, written where it is newer\n"
            "than what staged holds (batch, then position); the changed (page, day) keys\n"
            "marked dirty for the page stage with their hours.",
            sql.SQL("""WITH src AS MATERIALIZED (
        SELECT DISTINCT ON ({natural}) {src}
        FROM {raw} WHERE batch_id = p_batch
        ORDER BY {natural}, position DESC
    ), upd AS (
        UPDATE {staged} AS s SET {update}
        FROM src
        WHERE {same_key}
          AND (s.batch_id, s.position) < (src.batch_id, src.position)
        RETURNING s.page_id, s.hour
    ), ins AS (
        {into}
        SELECT {columns}
        FROM src
        WHERE NOT EXISTS (SELECT FROM {staged} s WHERE {same_key})
        RETURNING page_id, hour
    ), changed AS (
        SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
    ), mark AS (
        {mark}
    )
    SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed) INTO rows_in, rows_out
    """).format(
                natural=natural,
                # GA's raw rows hold their hour; PSI's get it from measured_at.
                src=sql.SQL("*" if source.hour == "hour" else f"{source.hour} AS hour, *"),
                raw=_q(raw),
                staged=_q(staged),
                update=_list(
                    sql.SQL("{0} = src.{0}").format(_q(c))
                    for c in (*source.carried, *source.values, "batch_id", "position")
                ),
                same_key=same_key,
                into=into,
                columns=columns,
                mark=mark.format(t=_q("hour"), rows=sql.SQL("changed")),
            ),
        ),
    ]


# ------------------------------------------------------------ the page stage


def _psi_pivot() -> sql.Composed:
    """PSI's score and vitals per (page, hour), pivoted by strategy (alias p)."""
    items = []
    for strategy in catalog.STRATEGIES:
        pairs = [("performance_score", f"{strategy}_{catalog.SCORE}")]
        pairs += [(v, f"{strategy}_{v}") for v in _vital_names()]
        items += [
            sql.SQL("max({}) FILTER (WHERE p.strategy = {}) AS {}").format(
                _q("p", column), sql.Literal(strategy), _q(alias)
            )
            for column, alias in pairs
        ]
    return _list(items)


def _page_values() -> sql.Composed:
    """page_hour's columns from the merged GA (traffic) and pivoted PSI rows."""
    traffic = set(catalog.TRAFFIC_NAMES)
    return _list(_q("ga" if c in traffic else "psi", c) for c in _page_hour_columns())


def _page_statements() -> list[Statement]:
    columns = _list(_q(c) for c in _page_hour_columns())
    first_load = Statement(
        "_page_first_load(p_from timestamptz, p_to timestamptz)",
        "A first load of the page stage's window: each page of its keys read whole,\n"
        "its GA and PSI rows in hour order, merged, inserted without conflict probes.",
        sql.SQL("""INSERT INTO page_hour (page_id, site_id, hour, {columns})
    SELECT k.page_id, pg.site_id, m.*
    FROM (SELECT DISTINCT page_id FROM _stage_keys ORDER BY page_id) AS k
    CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg
    CROSS JOIN LATERAL (
        SELECT coalesce(ga.hour, psi.hour) AS hour, {values}
        FROM (SELECT * FROM staged_ga g
              WHERE g.page_id = k.page_id AND g.hour >= p_from AND g.hour < p_to) AS ga
        FULL JOIN (SELECT p.hour, {pivot} FROM staged_psi p
                   WHERE p.page_id = k.page_id AND p.hour >= p_from AND p.hour < p_to
                   GROUP BY p.hour) AS psi ON psi.hour = ga.hour
    ) AS m (hour)
    ORDER BY k.page_id, m.hour""").format(
            columns=columns, values=_page_values(), pivot=_psi_pivot()
        ),
    )
    upsert = Statement(
        "_page_upsert()",
        "The page-hours of the dirty ranges (_stage_ranges) rewritten from staged, each\n"
        "range read by an index range scan of its own (LATERAL, kept apart by OFFSET 0)\n"
        "in (page, hour) order; the rows as written go to _page_new.",
        sql.SQL("""WITH ga AS (
        SELECT g.* FROM (SELECT * FROM _stage_ranges ORDER BY page_id, lo) AS r
        CROSS JOIN LATERAL (SELECT * FROM staged_ga g WHERE g.page_id = r.page_id
                            AND g.hour >= r.lo AND g.hour < r.hi OFFSET 0) AS g
    ), psi AS (
        SELECT p.page_id, p.hour, {pivot}
        FROM (SELECT * FROM _stage_ranges ORDER BY page_id, lo) AS r
        CROSS JOIN LATERAL (SELECT * FROM staged_psi p WHERE p.page_id = r.page_id
                            AND p.hour >= r.lo AND p.hour < r.hi OFFSET 0) AS p
        GROUP BY p.page_id, p.hour
    ), merged AS (
        SELECT coalesce(ga.hour, psi.hour) AS hour,
               coalesce(ga.page_id, psi.page_id) AS page_id, {values}
        FROM ga FULL OUTER JOIN psi ON psi.page_id = ga.page_id AND psi.hour = ga.hour
    ), written AS (
        INSERT INTO page_hour AS t (hour, page_id, site_id, {columns})
        SELECT m.hour, m.page_id, pg.site_id, {merged}
        FROM merged m JOIN page pg ON pg.id = m.page_id
        ORDER BY m.page_id, m.hour
        ON CONFLICT (hour, page_id) DO UPDATE SET {conflict}
        RETURNING t.*
    )
    INSERT INTO _page_new SELECT * FROM written""").format(
            pivot=_psi_pivot(),
            values=_page_values(),
            columns=columns,
            merged=_list(_q("m", c) for c in _page_hour_columns()),
            conflict=_conflict_update(_page_hour_columns()),
        ),
    )
    deltas = Statement(
        "_page_deltas()",
        "The interval stage's deltas: per rewritten page-hour, its new contribution\n"
        "(_page_new, sign +1) minus its old one (_page_old, sign -1).",
        sql.SQL("""INSERT INTO pipeline_delta (stage, period_start, page_id, site_id, {columns})
    SELECT 'interval', a.hour, a.page_id, min(a.site_id), {select} FROM (
        SELECT 1 AS sign, * FROM _page_new UNION ALL SELECT -1, * FROM _page_old
    ) AS a GROUP BY a.hour, a.page_id ORDER BY a.hour, a.page_id""").format(
            columns=_columns(), select=measure_select(signed=True)
        ),
    )
    return [first_load, upsert, deltas]


# ------------------------------------------------------------ aggregate stages


def _first_load(target: str, keys: str, source: str, time: str,
                period: sql.Composable, aggregates: sql.Composable) -> sql.Composed:  # fmt: skip
    """A first load into an empty window of ``target``: every row of ``source`` in
    [p_from, p_to) for each page of ``keys``, from one index range scan per page."""
    return sql.SQL("""INSERT INTO {target} (period_start, page_id, site_id, {columns})
    SELECT m.* FROM (SELECT DISTINCT page_id FROM {keys} ORDER BY page_id) AS k
    CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg
    CROSS JOIN LATERAL (
        SELECT {period} AS period_start, k.page_id, pg.site_id, {aggregates} FROM {source} a
        WHERE a.page_id = k.page_id AND a.{time} >= p_from AND a.{time} < p_to GROUP BY 1
    ) AS m ORDER BY m.page_id, m.period_start""").format(
        target=_q(target),
        columns=_columns(),
        keys=_q(keys),
        period=period,
        aggregates=aggregates,
        source=_q(source),
        time=_q(time),
    )


def _upsert_into(target: str) -> sql.Composed:
    return sql.SQL("INSERT INTO {} AS t (period_start, page_id, site_id, {})").format(
        _q(target), _columns()
    )


def _on_conflict() -> sql.Composed:
    return sql.SQL("ON CONFLICT (period_start, page_id) DO UPDATE SET {}").format(
        _conflict_update(m.name for m in _measures())
    )


def _interval_statements() -> list[Statement]:
    period = sql.SQL("interval_start(a.hour, p_hours)")
    return [
        Statement(
            "_interval_upsert(p_hours integer)",
            "The intervals of the dirty ranges (_stage_ranges) recomputed from page_hour.",
            sql.SQL("""{insert}
    SELECT interval_start(a.hour, p_hours), a.page_id, min(a.site_id), {select}
    FROM page_hour a JOIN _stage_ranges r ON r.page_id = a.page_id
      AND a.hour >= r.lo AND a.hour < r.hi
    GROUP BY 1, 2 ORDER BY 2, 1
    {conflict}""").format(
                insert=_upsert_into("agg_interval"),
                select=measure_select(signed=False),
                conflict=_on_conflict(),
            ),
        ),
        Statement(
            "_interval_first_load(p_from timestamptz, p_to timestamptz, p_hours integer)",
            "A first load of the interval stage's window, each page of _stage_keys whole.",
            _first_load(
                "agg_interval",
                "_stage_keys",
                "page_hour",
                "hour",
                period,
                measure_select(signed=False),
            ),
        ),
    ]


ROLLUPS = {
    # stage: (source, target, unit, how histograms combine at this level)
    stage.name: (
        catalog.STAGES[catalog.CHAIN.index(stage.name) - 1].tables[0],
        stage.tables[0],
        stage.period,
        "hist_merge_agg" if stage.hist_merged else "hist_cat_agg",
    )
    for stage in catalog.STAGES
    if stage.period in ("day", "month", "year")
}


def _rollup_statements(stage: str) -> list[Statement]:
    source, target, unit, hist = ROLLUPS[stage]
    aggregates = rollup_aggregates(hist)
    return [
        Statement(
            f"_{stage}_upsert(p_from timestamptz, p_to timestamptz)",
            f"The {stage} stage's dirty keys (_rollup_keys) recomputed from {source};\n"
            "the window's bounds on the finer table too, so that it is read by range.",
            sql.SQL("""{insert}
    SELECT k.period, a.page_id, min(a.site_id), {aggregates} FROM {source} a
    JOIN _rollup_keys k ON k.page_id = a.page_id
      AND a.period_start >= k.period AND a.period_start < k.period + {length}::interval
    WHERE a.period_start >= p_from AND a.period_start < p_to
    GROUP BY k.period, a.page_id ORDER BY a.page_id, k.period
    {conflict}""").format(
                insert=_upsert_into(target),
                aggregates=aggregates,
                source=_q(source),
                length=sql.Literal(f"1 {unit}"),
                conflict=_on_conflict(),
            ),
        ),
        Statement(
            f"_{stage}_first_load(p_from timestamptz, p_to timestamptz)",
            f"A first load of the {stage} stage's window, each page of _rollup_keys whole.",
            _first_load(
                target,
                "_rollup_keys",
                source,
                "period_start",
                sql.SQL("utc_trunc({}, a.period_start)").format(sql.Literal(unit)),
                aggregates,
            ),
        ),
        Statement(
            f"_{stage}_first_load_keys(p_from timestamptz, p_to timestamptz)",
            "After a first load: every period it wrote is a key (those only deltas\n"
            "brought included), so that the next stage's keys cover every row written.",
            sql.SQL("""INSERT INTO _rollup_keys SELECT DISTINCT t.page_id, t.period_start FROM {} t
    WHERE t.page_id IN (SELECT page_id FROM _rollup_keys)
      AND t.period_start >= p_from AND t.period_start < p_to
      AND NOT EXISTS (SELECT FROM _rollup_keys k
                      WHERE k.page_id = t.page_id AND k.period = t.period_start)""").format(
                _q(target)
            ),
        ),
    ]


def _delta_statements() -> list[Statement]:
    statements = []
    for stage in ("interval", *ROLLUPS):
        period = (
            sql.SQL("interval_start(a.period_start, p_hours)")
            if stage == "interval"
            else sql.SQL("a.period_start")
        )
        statements.append(
            Statement(
                f"_{stage}_take_deltas(p_from timestamptz, p_to timestamptz, p_hours integer)",
                f"The {stage} stage's deltas in [p_from, p_to), taken and summed per (period,\n"
                "page) into _deltas (p_hours: the interval length, for the interval stage).",
                sql.SQL("""WITH taken AS (
        DELETE FROM pipeline_delta
        WHERE stage = {stage} AND period_start >= p_from AND period_start < p_to
        RETURNING *
    ) INSERT INTO _deltas (period_start, page_id, site_id, {columns})
    SELECT {period}, a.page_id, min(a.site_id), {aggregates} FROM taken a GROUP BY 1, 2""").format(
                    stage=sql.Literal(stage),
                    columns=_columns(),
                    period=period,
                    aggregates=rollup_aggregates("hist_cat_agg"),
                ),
            )
        )
    for target in ("agg_interval", *(t for _, t, _, _ in ROLLUPS.values())):
        statements.append(
            Statement(
                f"_{target}_add_deltas()",
                f"_deltas added to {target}: counts and sums add, histograms append\n"
                "(hist_add); a row not there yet is inserted as it is.",
                sql.SQL("""INSERT INTO {target} AS t (period_start, page_id, site_id, {columns})
    SELECT d.* FROM _deltas d ORDER BY d.page_id, d.period_start
    ON CONFLICT (period_start, page_id) DO UPDATE SET {update}""").format(
                    target=_q(target), columns=_columns(), update=_delta_update()
                ),
            )
        )
    statements.append(
        Statement(
            "_hand_on_deltas(p_stage text, p_unit text)",
            "_deltas handed on to p_stage, summed per (p_unit period, page).",
            sql.SQL("""INSERT INTO pipeline_delta (stage, period_start, page_id, site_id, {columns})
    SELECT p_stage, utc_trunc(p_unit, a.period_start), a.page_id, min(a.site_id), {aggregates}
    FROM _deltas a GROUP BY 2, 3 ORDER BY 2, 3""").format(
                columns=_columns(), aggregates=rollup_aggregates("hist_cat_agg")
            ),
        )
    )
    return statements


def _site_daily_statements() -> list[Statement]:
    site = catalog.SITE_DAILY_TABLE
    return [
        Statement(
            "_site_daily_refresh(p_from timestamptz, p_to timestamptz)",
            f"The site-days of _site_days recomputed into {site} from agg_daily rows in\n"
            "[p_from, p_to): the bounds let the planner read only the window's days.",
            sql.SQL("""INSERT INTO {site} AS t (period_start, site_id, {columns})
    SELECT a.period_start, a.site_id, {aggregates} FROM agg_daily a
    JOIN _site_days s ON s.period_start = a.period_start AND s.site_id = a.site_id
    WHERE a.period_start >= p_from AND a.period_start < p_to
    GROUP BY a.period_start, a.site_id ORDER BY a.period_start, a.site_id
    ON CONFLICT (period_start, site_id) DO UPDATE SET {conflict}""").format(
                site=_q(site),
                columns=_columns(),
                aggregates=rollup_aggregates("hist_merge_agg"),
                conflict=_conflict_update(m.name for m in _measures()),
            ),
        ),
        Statement(
            "_site_daily_add_deltas()",
            f"The daily deltas (_deltas) of site-days not recomputed, summed per site and\n"
            f"day and added to {site}.",
            sql.SQL("""INSERT INTO {site} AS t (period_start, site_id, {columns})
    SELECT a.period_start, a.site_id, {aggregates} FROM _deltas a
    WHERE NOT EXISTS (SELECT FROM _site_days s
                      WHERE s.period_start = a.period_start AND s.site_id = a.site_id)
    GROUP BY a.period_start, a.site_id ORDER BY a.site_id, a.period_start
    ON CONFLICT (period_start, site_id) DO UPDATE SET {update}""").format(
                site=_q(site),
                columns=_columns(),
                aggregates=rollup_aggregates("hist_cat_agg"),
                update=_delta_update(),
            ),
        ),
    ]


def _dispatches() -> list[Dispatch]:
    window = "p_from timestamptz, p_to timestamptz"

    def call(function: str, args: str = "p_from, p_to") -> sql.Composed:
        return sql.SQL("{}({})").format(sql.Identifier(function), sql.SQL(args))

    def per_rollup(kind: str) -> tuple[tuple[str, sql.Composable], ...]:
        return tuple((stage, call(f"_{stage}_{kind}")) for stage in ROLLUPS)

    return [
        Dispatch(
            f"_rollup_filled(p_stage text, {window})",
            "Whether the roll-up stage's table holds a row in [p_from, p_to).",
            "boolean",
            tuple(
                (
                    stage,
                    sql.SQL(
                        "EXISTS (SELECT FROM {} "
                        "WHERE period_start >= p_from AND period_start < p_to)"
                    ).format(_q(target)),
                )
                for stage, (_, target, _, _) in ROLLUPS.items()
            ),
        ),
        Dispatch(
            f"_rollup_upsert(p_stage text, {window})",
            "_<stage>_upsert.",
            "bigint",
            per_rollup("upsert"),
        ),
        Dispatch(
            f"_rollup_first_load(p_stage text, {window})",
            "_<stage>_first_load.",
            "bigint",
            per_rollup("first_load"),
        ),
        Dispatch(
            f"_rollup_first_load_keys(p_stage text, {window})",
            "_<stage>_first_load_keys.",
            "bigint",
            per_rollup("first_load_keys"),
        ),
        Dispatch(
            "_rollup_add_deltas(p_stage text)",
            "_deltas added to the roll-up stage's table.",
            "bigint",
            tuple(
                (stage, call(f"_{target}_add_deltas", ""))
                for stage, (_, target, _, _) in ROLLUPS.items()
            ),
        ),
        Dispatch(
            f"_stage_take_deltas(p_stage text, {window}, p_hours integer)",
            "The stage's deltas taken into _deltas.",
            "bigint",
            tuple(
                (stage, call(f"_{stage}_take_deltas", "p_from, p_to, p_hours"))
                for stage in ("interval", *ROLLUPS)
            ),
        ),
    ]


def statements() -> tuple[Statement | Dispatch, ...]:
    """Every generated stage statement, and the dispatches among them by stage."""
    return (
        *(s for source in _sources() for s in _staged_statements(source)),
        *_page_statements(),
        *_interval_statements(),
        *(s for stage in ROLLUPS for s in _rollup_statements(stage)),
        *_delta_statements(),
        *_site_daily_statements(),
        *_dispatches(),
    )
