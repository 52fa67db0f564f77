"""Reads about the pipeline's state, for the CLI, the admin and the API."""

from dataclasses import dataclass

from django.db import OperationalError, connection, transaction
from psycopg import errors, sql

# Each stage's table(s), in chain order.
STAGE_TABLES: dict[str, tuple[str, ...]] = {
    "raw": ("raw_ga", "raw_psi"),
    "staged": ("staged_ga", "staged_psi"),
    "page": ("page_hour",),
    "interval": ("agg_interval",),
    "daily": ("agg_daily",),
    "monthly": ("agg_monthly",),
    "yearly": ("agg_yearly",),
}


# A first load of a staged table holds it exclusively until it commits
# (docs/architecture.md, "Staged fast path"): counting its rows then waits at
# most this long and reports the table as being loaded.
COUNT_LOCK_TIMEOUT = "250ms"


@dataclass(frozen=True)
class StageState:
    stage: str
    rows: dict[str, int | None]  # None: the table is being loaded (locked)
    ledger: dict[str, int]
    dirty: int


def stage_states() -> list[StageState]:
    """Rows held by each stage's tables, its ledger windows by status, its dirty keys."""
    with connection.cursor() as cursor:
        ledger: dict[str, dict[str, int]] = {}
        cursor.execute("SELECT stage, status, count(*) FROM pipeline_ledger GROUP BY 1, 2")
        for stage, status, count in cursor.fetchall():
            ledger.setdefault(stage, {})[status] = count
        cursor.execute("SELECT stage, count(*) FROM pipeline_dirty GROUP BY 1")
        dirty = dict(cursor.fetchall())
        cursor.execute(
            "SELECT source, status, count(*) FROM ingest_batch GROUP BY 1, 2 ORDER BY 1, 2"
        )
        raw_ledger: dict[str, int] = {}
        for _source, status, count in cursor.fetchall():
            raw_ledger[status] = raw_ledger.get(status, 0) + count
        ledger["raw"] = raw_ledger

        states = []
        for stage, tables in STAGE_TABLES.items():
            rows = {table: _count_rows(cursor, table) for table in tables}
            states.append(StageState(stage, rows, ledger.get(stage, {}), dirty.get(stage, 0)))
    return states


def _count_rows(cursor, table: str) -> int | None:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL lock_timeout = %s", [COUNT_LOCK_TIMEOUT])
            cursor.execute(query.as_string(cursor.connection))
            return cursor.fetchone()[0]
    except OperationalError as exc:
        if isinstance(exc.__cause__, errors.LockNotAvailable):
            return None
        raise
