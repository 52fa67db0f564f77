"""Running the aggregation stages, window by window, with the ledger.

Each stage's work is a stored procedure (``sql/functions/stages.sql``); this
module decides *which* windows to run, takes the window's advisory lock so
that no two workers work it at once, and records the run in the ledger
(``pipeline_ledger``: the window's current state, pending / queued / running /
done / failed, attempts, timings, row counts) and in the run history
(``pipeline_run``: one row per run, done or failed, with its attempt, worker,
Celery task id and error). It is called by the Celery tasks, by ``manage.py
pipeline`` and by the admin; none of them hold logic of their own.

A run claims its window ``running`` (worker host:pid, start) in a statement of
its own before the stage's transaction, so every session sees it while it
lasts; ``done`` (or ``failed``) is written in the stage's transaction (or right
after it rolled back). Run with ``hand_off`` (the Celery chain), the stage's
transaction also queues what comes next (``_hand_off``: the ledger's
``queued`` state and an outbox message per window, sql/functions/handoff.sql),
which the relay publishes after the commit (``pipeline.services.relay_outbox``).

Windows: the staged stage works on one ingest batch; page, interval and daily
on one calendar month of dirty (page, day) keys (page and interval keys carry
the mask of their dirty hours); monthly and yearly on one calendar year.

The windows at the two ends of Python's datetime range are open on the SQL
side: the first one (starting 0001-01-01 UTC) takes every key before its end,
the last one (December 9999 or the year 9999) every key from its start,
``timestamptz`` reaching 294276 AD. The ledger records such a window with
``RANGE_START`` / ``RANGE_END`` (``datetime.min`` / ``datetime.max`` in UTC), so
that every ledger row stays readable from Python; keys are period starts, so no
key falls between ``RANGE_END`` and the year 10000.

A window that fails is recorded failed (ledger and run history) and raised to
its caller; ``drain`` records it and goes on with the other windows and the
later stages, returning it with its error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from django.conf import settings
from psycopg import sql

from observability.logs import logged_stage_run

from . import datasettings, dataversion
from .catalog import LEDGER_STAGES, NEXT_STAGE, TIME_STAGES, WINDOW_UNIT
from .ingest.service import conninfo

logger = logging.getLogger(__name__)

# The stages with ledger windows, in chain order, from pipeline/catalog.py.
STAGES = LEDGER_STAGES
_LOCK_NAMESPACE = 0x4D47  # advisory lock class of stage windows (0x4D46: staged_ensure)
RANGE_START = datetime.min.replace(tzinfo=UTC)  # start of the first window, open below
RANGE_END = datetime.max.replace(tzinfo=UTC)  # end of the last window, open above


@dataclass
class StageRun:
    stage: str
    window: str
    status: str  # done | busy | failed
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    error: str | None = None  # a failed run's error, as the ledger records it


def connect(*, autocommit: bool = False) -> psycopg.Connection:
    # A killed worker's backend notices the lost client within seconds and rolls
    # back, releasing the window's advisory lock for the redelivered task.
    return psycopg.connect(
        conninfo(), autocommit=autocommit, options="-c client_connection_check_interval=2000"
    )


def _window_start(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.replace(month=1) if unit == "year" else start


def _window_end(start: datetime, unit: str) -> datetime:
    """The end of the window starting at ``start``; ``RANGE_END`` for the last one."""
    if unit == "year" or start.month == 12:
        if start.year == RANGE_END.year:
            return RANGE_END
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def _sql_bounds(start: datetime, end: datetime) -> tuple[datetime | str, datetime | str]:
    """The bounds a stage procedure gets: the windows at the ends of the range are open."""
    return (
        "-infinity" if start == RANGE_START else start,
        "infinity" if end == RANGE_END else end,
    )


def window_label(start: datetime, end: datetime) -> str:
    """A time window as runs and reports name it, ``2024-01-01..2024-02-01``."""
    last = "end of range" if end == RANGE_END else f"{end:%Y-%m-%d}"
    return f"{start:%Y-%m-%d}..{last}"


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def _lock_key(stage: str, key: int) -> tuple[int, int]:
    return (_LOCK_NAMESPACE + STAGES.index(stage), key % 2**31)


_DELTA_NAMESPACE = 0x4D58  # + the rank of the stage whose window's deltas it guards


def _take_delta_locks(conn, stage: str, start: datetime) -> None:
    """In a time window's transaction, before any other statement of its stage: its own
    window's delta lock, exclusive, and the delta lock of the next stage's window it
    writes deltas for, shared. A stage takes its deltas in one statement and reads the
    finer table in later ones; without the locks, the window of the stage before that
    commits in between puts its change in both (added twice). Taken in stage order, so
    no two windows wait for each other."""
    if stage != "page":  # the page stage takes no deltas
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (_DELTA_NAMESPACE + STAGES.index(stage), int(start.timestamp() // 3600) % 2**31),
        )
    following = NEXT_STAGE[stage]
    if following is not None:
        next_start = _window_start(start, WINDOW_UNIT[following])
        conn.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, %s)",
            (_DELTA_NAMESPACE + STAGES.index(following),
             int(next_start.timestamp() // 3600) % 2**31),
        )  # fmt: skip


def worker_name() -> str:
    """The process running a window, as the ledger and the run history name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class _Run:
    """One run of a window as it started: what its history row needs besides the outcome."""

    started_at: datetime
    started: float  # perf_counter at the start
    task_id: str | None

    @classmethod
    def begin(cls, task_id: str | None) -> _Run:
        return cls(datetime.now(UTC), time.perf_counter(), task_id)

    def millis(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


_RUN_INSERT = (
    "INSERT INTO pipeline_run (ledger_id, attempt, status, started_at, finished_at, "
    "duration_ms, rows_in, rows_out, worker, task_id, error) "
    "VALUES (%s, %s, %s, %s, clock_timestamp(), %s, %s, %s, %s, %s, %s)"
)


def _ledger_start(conn, stage: str, batch_id: int | None, start, end) -> tuple[int, int]:
    """Claims the window's ledger row, ``running`` with this worker and its start, in a
    statement of its own (autocommit), so that every session sees it while it runs;
    returns the row's id and this run's attempt number."""
    return conn.execute(
        "INSERT INTO pipeline_ledger (stage, batch_id, window_start, window_end, status, "
        "attempts, started_at, updated_at, worker, error) "
        "VALUES (%s, %s, %s, %s, 'running', 1, now(), now(), %s, NULL) "
        "ON CONFLICT (stage, batch_id, window_start) DO UPDATE SET status = 'running', "
        "attempts = pipeline_ledger.attempts + 1, started_at = now(), updated_at = now(), "
        "worker = EXCLUDED.worker, error = NULL, window_end = EXCLUDED.window_end "
        "RETURNING id, attempts",
        (stage, batch_id, start, end, worker_name()),
    ).fetchone()


def _ledger_finish(
    conn, ledger_id: int, attempt: int, run: _Run, rows_in: int, rows_out: int
) -> None:
    """The window done: the ledger's state and its run's history row, in the stage's
    transaction."""
    millis = run.millis()
    conn.execute(
        "UPDATE pipeline_ledger SET status = 'done', finished_at = now(), updated_at = now(), "
        "duration_ms = %s, rows_in = %s, rows_out = %s WHERE id = %s",
        (millis, rows_in, rows_out, ledger_id),
    )
    conn.execute(
        _RUN_INSERT,
        (ledger_id, attempt, "done", run.started_at, millis, rows_in, rows_out, worker_name(),
         run.task_id, None),
    )  # fmt: skip


def _ledger_fail(
    conn,
    claim: tuple[int, int] | None,
    stage: str,
    batch_id: int | None,
    start,
    end,
    run: _Run,
    error: BaseException,
    hand_off: bool,
) -> None:
    """Records a failed run, ledger and history, after the stage's transaction rolled
    back: on the run's own connection while it holds the window's lock, or on a new one
    when that connection is gone. ``claim``: the ledger row and attempt the run claimed
    (None when it failed before claiming it). With ``hand_off``, what the window's state
    held back is handed off as when it finishes (a failed window waits for nothing)."""
    text = _error_text(error)
    with contextlib.ExitStack() as stack:
        if conn is None or conn.closed or conn.broken:
            conn = stack.enter_context(connect())
        with conn.transaction():
            if hand_off:
                conn.execute("SELECT pipeline_handoff_lock(%s, %s, %s)", (stage, batch_id, start))
            if claim is None:
                claim = conn.execute(
                    "INSERT INTO pipeline_ledger (stage, batch_id, window_start, window_end, "
                    "status, attempts, updated_at, finished_at, worker, error) "
                    "VALUES (%s, %s, %s, %s, 'failed', 1, now(), now(), %s, %s) "
                    "ON CONFLICT (stage, batch_id, window_start) DO UPDATE SET "
                    "status = 'failed', attempts = pipeline_ledger.attempts + 1, "
                    "updated_at = now(), finished_at = now(), worker = EXCLUDED.worker, "
                    "error = EXCLUDED.error RETURNING id, attempts",
                    (stage, batch_id, start, end, worker_name(), text),
                ).fetchone()
            else:
                conn.execute(
                    "UPDATE pipeline_ledger SET status = 'failed', updated_at = now(), "
                    "finished_at = now(), error = %s WHERE id = %s",
                    (text, claim[0]),
                )
            ledger_id, attempt = claim
            conn.execute(
                _RUN_INSERT,
                (ledger_id, attempt, "failed", run.started_at, run.millis(), None, None,
                 worker_name(), run.task_id, text),
            )  # fmt: skip
            if hand_off:
                _hand_off(conn, stage, batch_id, start, including_self=False)


# ------------------------------------------------------------ the hand-off


def _handoff_windows(conn, stage: str, batch_id: int | None, start) -> list[tuple[str, datetime]]:
    """The windows a finished window considers queueing, in lock order (stage, start):
    for a batch, every page window of its hours; for a time window, the window of each
    later stage holding its start (sql/functions/handoff.sql says why that suffices)."""
    if stage == "staged":
        first, last = conn.execute(
            "SELECT first_hour, last_hour FROM ingest_batch WHERE id = %s", (batch_id,)
        ).fetchone()
        if first is None:
            return []
        windows, month = [], _window_start(first, "month")
        while month <= last:
            windows.append(("page", month))
            end = _window_end(month, "month")
            if end == RANGE_END:
                break
            month = end
        return windows
    following = STAGES[STAGES.index(stage) + 1 :]
    return [(later, _window_start(start, WINDOW_UNIT[later])) for later in following]


def _hand_off(conn, stage: str, batch_id: int | None, start, *, including_self: bool = True) -> int:
    """In the transaction that finished a window (its ledger row updated under its own
    hand-off lock): queues the windows that now have work and nothing left to wait for,
    and, when ``including_self``, the finished window again if keys of it were marked
    dirty while it ran. Each queued window gets an outbox message, published after the
    commit. Returns the windows queued."""
    candidates = _handoff_windows(conn, stage, batch_id, start)
    if including_self and stage != "staged":
        candidates.insert(0, (stage, start))
    queued = 0
    for later, window_start in candidates:
        window_end = _window_end(window_start, WINDOW_UNIT[later])
        queued += conn.execute(
            "SELECT pipeline_queue_window(%s, %s, %s, %s::timestamptz, %s::timestamptz)",
            (later, window_start, window_end, *_sql_bounds(window_start, window_end)),
        ).fetchone()[0]
    return queued


def _claim_lock(conn, stage: str, key: int) -> bool:
    """The window's run lock, for this connection's session: no two runs of a window
    overlap, even one whose ledger row the sweep gave up on while it still runs."""
    return conn.execute("SELECT pg_try_advisory_lock(%s, %s)", _lock_key(stage, key)).fetchone()[0]


@logged_stage_run
def run_staged(batch_id: int, *, task_id: str | None = None, hand_off: bool = False) -> StageRun:
    """Stages one ingest batch (raw -> staged) and marks its page-days dirty.

    ``task_id``: the Celery task running it, kept in the run history. ``hand_off``:
    queue the page windows it dirtied (the Celery chain), in its transaction.
    """
    window = f"batch {batch_id}"
    run = _Run.begin(task_id)
    started = run.started
    claim = None
    with connect(autocommit=True) as conn:
        try:
            if not _claim_lock(conn, "staged", batch_id):
                return StageRun("staged", window, "busy")
            claim = _ledger_start(conn, "staged", batch_id, None, None)
            with conn.transaction():
                rows_in, rows_out = conn.execute(
                    "SELECT rows_in, rows_out FROM stage_staged(%s)", (batch_id,)
                ).fetchone()
                if hand_off:
                    conn.execute("SELECT pipeline_handoff_lock('staged', %s, NULL)", (batch_id,))
                _ledger_finish(conn, *claim, run, rows_in, rows_out)
                if hand_off:
                    _hand_off(conn, "staged", batch_id, None)
        except Exception as exc:
            _ledger_fail(conn, claim, "staged", batch_id, None, None, run, exc, hand_off)
            raise
    dataversion.bump()
    return StageRun("staged", window, "done", rows_in, rows_out, time.perf_counter() - started)


@logged_stage_run
def run_window(
    stage: str, start: datetime, *, task_id: str | None = None, hand_off: bool = False
) -> StageRun:
    """Recomputes the dirty keys of one stage inside one window starting at ``start``.

    ``task_id``: the Celery task running it, kept in the run history. ``hand_off``:
    queue the later stages' windows it leads to (the Celery chain), in its transaction.
    """
    if stage not in TIME_STAGES:
        raise ValueError(f"not a time-window stage: {stage}")
    if start != _window_start(start, WINDOW_UNIT[stage]):
        # Keys are whole days (months, years): a window cut elsewhere would
        # take a key and recompute only part of its period.
        raise ValueError(f"a {stage} window starts on a UTC {WINDOW_UNIT[stage]}: {start}")
    end = _window_end(start, WINDOW_UNIT[stage])
    window = window_label(start, end)
    low, high = _sql_bounds(start, end)
    run = _Run.begin(task_id)
    started = run.started
    claim = None
    with connect(autocommit=True) as conn:
        try:
            if not _claim_lock(conn, stage, int(start.timestamp() // 3600)):
                return StageRun(stage, window, "busy")
            claim = _ledger_start(conn, stage, None, start, end)
            with conn.transaction():
                _take_delta_locks(conn, stage, start)
                datasettings.verify(conn)  # built with this process's settings (FOR SHARE)
                if stage == "interval":
                    row = conn.execute(
                        "SELECT rows_in, rows_out "
                        "FROM stage_interval(%s::timestamptz, %s::timestamptz, %s)",
                        (low, high, settings.METRIFLOW_INTERVAL_HOURS),
                    ).fetchone()
                else:
                    row = conn.execute(
                        sql.SQL(
                            "SELECT rows_in, rows_out FROM {}(%s::timestamptz, %s::timestamptz)"
                        ).format(sql.Identifier(f"stage_{stage}")),
                        (low, high),
                    ).fetchone()
                rows_in, rows_out = row
                if hand_off:
                    conn.execute("SELECT pipeline_handoff_lock(%s, NULL, %s)", (stage, start))
                _ledger_finish(conn, *claim, run, rows_in, rows_out)
                if hand_off:
                    _hand_off(conn, stage, None, start)
        except Exception as exc:
            _ledger_fail(conn, claim, stage, None, start, end, run, exc, hand_off)
            raise
    dataversion.bump()
    return StageRun(stage, window, "done", rows_in, rows_out, time.perf_counter() - started)


def pending_batches() -> list[int]:
    """Ingest batches handed off to the staged stage and not staged since."""
    with connect() as conn:
        rows = conn.execute(
            "SELECT l.batch_id FROM pipeline_ledger l JOIN ingest_batch b ON b.id = l.batch_id "
            "WHERE l.stage = 'staged' AND l.status <> 'done' "
            "AND b.status IN ('loaded', 'broken') ORDER BY l.batch_id"
        ).fetchall()
    return [batch_id for (batch_id,) in rows]


def dirty_windows(stage: str) -> list[datetime]:
    """Starts of the windows of ``stage`` that hold dirty keys or deltas. A key beyond Python's
    datetime range belongs to the open window at that end of the range."""
    unit = WINDOW_UNIT[stage]
    with connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT greatest(least(date_trunc(%(unit)s, period_start, 'UTC'), %(last)s), "
            "%(first)s) AS w FROM (SELECT period_start FROM pipeline_dirty WHERE stage = %(stage)s "
            "UNION ALL SELECT period_start FROM pipeline_delta WHERE stage = %(stage)s) AS work "
            "ORDER BY w",
            {
                "unit": unit,
                "last": _window_start(RANGE_END, unit),
                "first": RANGE_START,
                "stage": stage,
            },
        ).fetchall()
    return [start.astimezone(UTC) for (start,) in rows]


def stale_after_seconds() -> int:
    """How long a window may stay queued or running before the sweep queues it again:
    the stage task's hard time limit, past which Celery has killed its run."""
    return settings.CELERY_TASK_TIME_LIMIT


_STALE = sql.SQL(
    "(status = 'running' AND started_at < now() - make_interval(secs => {limit})) "
    "OR (status = 'queued' AND queued_at < now() - make_interval(secs => {limit}))"
).format(limit=sql.Placeholder("limit"))


def sweep() -> dict[str, int]:
    """What the periodic sweep queues (each in a transaction of its own, with its outbox
    message): windows queued or running past ``stale_after_seconds()`` (a run killed
    with its worker, a message lost), batches handed off but not staged (pending or
    failed), and every window holding dirty keys that nothing else will queue. Old
    published outbox rows are deleted. Returns the counts queued."""
    limit = stale_after_seconds()
    counts = {"stale": 0, "batches": 0, "windows": 0}
    with connect(autocommit=True) as conn:
        stale = conn.execute(
            sql.SQL(
                "SELECT stage, batch_id, window_start, window_end FROM pipeline_ledger "
                "WHERE {} ORDER BY _stage_rank(stage), batch_id, window_start"
            ).format(_STALE),
            {"limit": limit},
        ).fetchall()
        for stage, batch_id, start, end in stale:
            with conn.transaction():
                conn.execute("SELECT pipeline_handoff_lock(%s, %s, %s)", (stage, batch_id, start))
                still = conn.execute(
                    sql.SQL(
                        "SELECT FROM pipeline_ledger WHERE stage = %(stage)s "
                        "AND batch_id IS NOT DISTINCT FROM %(batch)s "
                        "AND window_start IS NOT DISTINCT FROM %(start)s AND ({})"
                    ).format(_STALE),
                    {"stage": stage, "batch": batch_id, "start": start, "limit": limit},
                ).fetchone()
                if still is not None:
                    counts["stale"] += conn.execute(
                        "SELECT pipeline_enqueue(%s, %s, %s, %s, true)",
                        (stage, batch_id, start, end),
                    ).fetchone()[0]
        batches = conn.execute(
            "SELECT l.batch_id FROM pipeline_ledger l JOIN ingest_batch b ON b.id = l.batch_id "
            "WHERE l.stage = 'staged' AND l.status IN ('pending', 'failed') "
            "AND b.status IN ('loaded', 'broken') ORDER BY l.batch_id"
        ).fetchall()
        for (batch_id,) in batches:
            with conn.transaction():
                counts["batches"] += conn.execute(
                    "SELECT pipeline_enqueue('staged', %s, NULL, NULL)", (batch_id,)
                ).fetchone()[0]
        for stage in TIME_STAGES:
            for start in dirty_windows(stage):
                end = _window_end(start, WINDOW_UNIT[stage])
                with conn.transaction():
                    counts["windows"] += conn.execute(
                        "SELECT pipeline_queue_window(%s, %s, %s, %s::timestamptz, "
                        "%s::timestamptz)",
                        (stage, start, end, *_sql_bounds(start, end)),
                    ).fetchone()[0]
        conn.execute("DELETE FROM pipeline_outbox WHERE published_at < now() - interval '7 days'")
    return counts


def drain(stages: tuple[str, ...] = STAGES, workers: int | None = None) -> list[StageRun]:
    """Runs every pending batch and dirty window, stage after stage, until none is left.

    Within a stage, up to ``workers`` (default ``METRIFLOW_DRAIN_WORKERS``) windows
    run at once, each on its own connection: windows of one stage touch disjoint
    rows, and a PostgreSQL backend per window uses the server's cores (two month
    windows of the page stage: 1.6x faster side by side than one after the
    other). Batches of one source serialise on their staged table's lock; a GA
    and a PSI batch stage side by side. Runs are returned in window order.

    A window that fails does not stop the others: it is recorded failed (ledger
    and run history, by ``run_staged`` / ``run_window``), its keys stay dirty,
    and it is returned with status ``failed`` and its error; the other windows
    and the later stages run. The later stages never see its keys: a failed
    window marks nothing dirty for them.
    """
    workers = workers or settings.METRIFLOW_DRAIN_WORKERS
    runs: list[StageRun] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drain") as pool:
        if "staged" in stages:
            runs.extend(pool.map(_run_batch_or_fail, pending_batches()))
        for stage in TIME_STAGES:
            if stage in stages:
                run = functools.partial(_run_window_or_fail, stage)
                runs.extend(pool.map(run, dirty_windows(stage)))
    return runs


def failed_runs(runs: list[StageRun]) -> list[StageRun]:
    return [run for run in runs if run.status == "failed"]


def _run_batch_or_fail(batch_id: int) -> StageRun:
    try:
        return run_staged(batch_id)
    except Exception as exc:
        logger.exception("staged batch %s failed", batch_id)
        return StageRun("staged", f"batch {batch_id}", "failed", error=_error_text(exc))


def _run_window_or_fail(stage: str, start: datetime) -> StageRun:
    try:
        return run_window(stage, start)
    except Exception as exc:
        logger.exception("%s window starting %s failed", stage, start.isoformat())
        window = window_label(start, _window_end(start, WINDOW_UNIT[stage]))
        return StageRun(stage, window, "failed", error=_error_text(exc))


def mark_window_dirty(stage: str, start: datetime, end: datetime) -> int:
    """Marks every key of ``stage`` in [start, end) dirty, read from the stage's input
    (``mark_window_dirty`` in sql/schema/0008), so that its next run recomputes the
    whole range; page and interval keys get all their hours. Returns the keys marked.
    ``RANGE_START`` / ``RANGE_END`` leave the range open at that end, as a window's."""
    if stage not in TIME_STAGES:
        raise ValueError(f"not a time-window stage: {stage}")
    with connect() as conn:
        count = conn.execute(
            "SELECT mark_window_dirty(%s, %s::timestamptz, %s::timestamptz)",
            (stage, *_sql_bounds(start, end)),
        ).fetchone()[0]
        conn.commit()
    return count


def mark_range_dirty(start: datetime, end: datetime) -> int:
    """Marks every staged (page, day) in [start, end) dirty for the page stage (a rebuild),
    whole days: a key already dirty for some of its hours gets all of them."""
    return mark_window_dirty("page", start, end)
