"""The database's copy of the catalog (``pipeline/catalog.py``), written at migrate time.

The stage SQL (``sql/functions``) reads the catalog through what this module
writes: the ``vital`` table's rows (name, thresholds, position) and small SQL
functions, generated from the catalog and replaced whenever they differ from it:

* ``catalog_strategies()``: ``(ord, name)``, the strategies in column order;
* ``catalog_measures()``: ``(ord, name, kind, strategy, vital)``, the stored
  measures of the aggregate tables in table order (after the keys), ``kind``
  one of ``sum``, ``exact_sum``, ``count``, ``hist``;
* ``catalog_stages()``: ``(rank, name, tables, sources, window_unit, period,
  next, next_period, hist_merged)``, the stages that have ledger windows;
* ``catalog_stage_rank(text)``: a stage's rank, ``staged`` = 0, NULL for
  anything else;
* ``hist_bucket(double precision)`` and ``hist_value(integer)``: the histogram's
  bucket of a value and a bucket's representative, from ``HISTOGRAM``, in
  double precision as Python computes them.

All are ``LANGUAGE sql``, ``IMMUTABLE PARALLEL SAFE`` bodies of a single
``SELECT``, so the planner inlines them and folds their constants.

With them go the stage statements of ``pipeline/stage_sql.py``: one PL/pgSQL
function per statement whose column lists come from the catalog, its body that
one static statement, which the stage procedures call.

``pipeline/apps.py`` calls :func:`prepare` before migrations run (the functions
only, which the stage SQL may call from its own SQL functions, checked when it
is created) and :func:`sync` after every ``migrate`` (and the flush of a test
database): the functions and the ``vital`` rows, or, when the stage schema is
not there (migrated back past it), no catalog function at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import ProgrammingError, connections, transaction

from . import catalog, stage_sql


@dataclass(frozen=True)
class Function:
    signature: str  # as to_regprocedure() takes it
    returns: str
    body: str

    @property
    def name(self) -> str:
        return self.signature.split("(", 1)[0]

    def create_sql(self) -> str:
        return (
            f"CREATE OR REPLACE FUNCTION {self.signature} RETURNS {self.returns}\n"
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $catalog${self.body}$catalog$"
        )


def _text(value: str | None) -> str:
    # Catalog names are lowercase identifiers (checked by the catalog): no quote to escape.
    return "NULL::text" if value is None else f"'{value}'"


def _float(value: float) -> str:
    # repr() round-trips: the literal is the very double the catalog holds.
    return f"{float(value)!r}::double precision"


def _array(values: tuple[str, ...]) -> str:
    return f"ARRAY[{', '.join(_text(v) for v in values)}]::text[]"


def _values(rows: list[tuple[str, ...]], columns: str) -> str:
    lines = ",\n        ".join(f"({', '.join(row)})" for row in rows)
    return f"\n    SELECT * FROM (VALUES\n        {lines}\n    ) AS t ({columns})\n"


def functions() -> tuple[Function | stage_sql.Statement, ...]:
    """The catalog's SQL functions and the stage statements (``pipeline/stage_sql.py``),
    generated from ``pipeline/catalog.py``."""
    h = catalog.HISTOGRAM
    strategies = [(str(i), _text(name)) for i, name in enumerate(catalog.STRATEGIES, 1)]
    measures = [
        (str(i), _text(m.name), _text(m.kind), _text(m.strategy), _text(m.vital))
        for i, m in enumerate(catalog.aggregate_measures(), 1)
    ]
    stages = []
    for stage in catalog.STAGES:
        if not stage.ledger:
            continue
        before = catalog.CHAIN.index(stage.name) - 1
        following = catalog.STAGE.get(stage.next) if stage.next else None
        stages.append((
            str(catalog.stage_rank(stage.name)),
            _text(stage.name),
            _array(stage.tables),
            _array(catalog.STAGES[before].tables if before >= 0 else ()),
            _text(stage.window),
            _text(stage.period),
            _text(stage.next),
            _text(following.period if following else None),
            "true" if stage.hist_merged else "false",
        ))  # fmt: skip
    return (
        Function(
            "catalog_strategies()",
            "TABLE (ord integer, name text)",
            _values(strategies, "ord, name"),
        ),
        Function(
            "catalog_measures()",
            "TABLE (ord integer, name text, kind text, strategy text, vital text)",
            _values(measures, "ord, name, kind, strategy, vital"),
        ),
        Function(
            "catalog_stages()",
            "TABLE (rank integer, name text, tables text[], sources text[], window_unit text, "
            "period text, next text, next_period text, hist_merged boolean)",
            _values(
                stages,
                "rank, name, tables, sources, window_unit, period, next, next_period, hist_merged",
            ),
        ),
        Function(
            "catalog_stage_rank(p_stage text)",
            "integer",
            f"\n    SELECT array_position({_array(catalog.LEDGER_STAGES)}, p_stage) - 1\n",
        ),
        Function(
            "hist_bucket(v double precision)",
            "integer",
            "\n    -- Generated from pipeline/catalog.py HISTOGRAM (pipeline/reference.py).\n"
            "    SELECT CASE WHEN v <= 0 THEN 0\n"
            f"                ELSE greatest(1, floor(ln(v / {_float(h.base)})"
            f" / ln({_float(h.growth)}))::integer + 1) END\n",
        ),
        Function(
            "hist_value(bucket integer)",
            "double precision",
            "\n    -- Generated from pipeline/catalog.py HISTOGRAM (pipeline/reference.py).\n"
            "    -- 2lu/(l+u) of the bucket's bounds: the same relative error at both ends.\n"
            "    SELECT CASE WHEN bucket <= 0 THEN 0\n"
            f"                ELSE 2 * {_float(h.base)} * power({_float(h.growth)}, bucket)"
            f" / (1 + {_float(h.growth)}) END\n",
        ),
        *stage_sql.statements(),
    )


def _signature_types(signature: str) -> str:
    """``f(p_stage text)`` -> ``f(text)``: what to_regprocedure() and DROP take."""
    name, args = signature.rstrip(")").split("(", 1)
    args = [arg.strip() for arg in args.split(",") if arg.strip()]
    args = [arg for arg in args if not arg.startswith("OUT ")]  # not part of the identity
    types = [arg.split(" ", 1)[1] if " " in arg else arg for arg in args]
    return f"{name}({', '.join(types)})"


def _ensure_functions(cursor) -> list[str]:
    """Creates or replaces each function whose body differs; returns their names."""
    changed = []
    for function in functions():
        regproc = _signature_types(function.signature)
        cursor.execute("SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(%s)", [regproc])
        row = cursor.fetchone()
        if row and row[0] == function.body:
            continue
        try:
            with transaction.atomic(using=cursor.db.alias):
                cursor.execute(function.create_sql())
        except ProgrammingError as error:
            # A function whose result type changed cannot be replaced in place.
            if getattr(error.__cause__, "sqlstate", None) != "42P13":
                raise
            cursor.execute(f"DROP FUNCTION {regproc}")
            cursor.execute(function.create_sql())
        changed.append(function.name)
    return changed


def _sync_vitals(cursor) -> bool:
    """The ``vital`` table's rows as the catalog declares them; whether it changed any."""
    wanted = [
        (v.name, float(v.good_max), float(v.poor_min), position)
        for position, v in enumerate(catalog.VITALS, 1)
    ]
    cursor.execute("SELECT name, good_max, poor_min, position FROM vital ORDER BY position")
    if [tuple(row) for row in cursor.fetchall()] == wanted:
        return False
    cursor.execute("DELETE FROM vital WHERE name <> ALL(%s)", [[v[0] for v in wanted]])
    # Positions are unique: move the kept rows out of the way before renumbering.
    cursor.execute("UPDATE vital SET position = -position")
    for name, good_max, poor_min, position in wanted:
        cursor.execute(
            "INSERT INTO vital (name, good_max, poor_min, position) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET good_max = EXCLUDED.good_max, "
            "poor_min = EXCLUDED.poor_min, position = EXCLUDED.position",
            [name, good_max, poor_min, position],
        )
    return True


def prepare(using: str = "default") -> list[str]:
    """The catalog's functions, before migrations that may create SQL calling them."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        return _ensure_functions(cursor)


def sync(using: str = "default") -> dict[str, object]:
    """The database as the catalog declares it: its functions and the ``vital`` rows.

    Without the stage schema (no ``vital`` table), drops the catalog's functions.
    Returns what it changed.
    """
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regclass('vital') IS NOT NULL")
        if not cursor.fetchone()[0]:
            for function in functions():
                cursor.execute(f"DROP FUNCTION IF EXISTS {_signature_types(function.signature)}")
            return {"functions": [], "vitals": False, "schema": False}
        changed = _ensure_functions(cursor)
        return {"functions": changed, "vitals": _sync_vitals(cursor), "schema": True}
