"""Reads about the pipeline's state, for the CLI, the admin and the API."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from django.db import OperationalError, connection, transaction
from psycopg import errors, sql

from metriflow.celery import DEAD_LETTER_QUEUE, app, declare_dead_letter, recover

from . import catalog
from .models import TaskFailure

# Each stage's table(s), in chain order (pipeline/catalog.py).
STAGE_TABLES: dict[str, tuple[str, ...]] = catalog.STAGE_TABLES


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
        cursor.execute(
            "SELECT stage, count(*) FROM (SELECT stage FROM pipeline_dirty "
            "UNION ALL SELECT stage FROM pipeline_delta) AS pending GROUP BY 1"
        )
        dirty = dict(cursor.fetchall())
        cursor.execute(
            "SELECT source, status, count(*) FROM ingest_batch GROUP BY 1, 2 ORDER BY 1, 2"
        )
        raw_ledger: dict[str, int] = {}
        for _source, status, count in cursor.fetchall():
            raw_ledger[status] = raw_ledger.get(status, 0) + count
        # Files queued for ingestion (ingest --async) that no worker has taken yet.
        cursor.execute("SELECT count(*) FROM ingest_request WHERE status = 'queued'")
        queued = cursor.fetchone()[0]
        if queued:
            raw_ledger["queued"] = queued
        ledger["raw"] = raw_ledger

        states = []
        for stage, tables in STAGE_TABLES.items():
            rows = {table: _count_rows(cursor, table) for table in tables}
            states.append(StageState(stage, rows, ledger.get(stage, {}), dirty.get(stage, 0)))
    return states


# The age of each stage's oldest pending work, by PostgreSQL's clock: its oldest dirty
# key (``pipeline_dirty.marked_at``, kept from its first mark) or delta
# (``pipeline_delta.marked_at``); for ``raw``, its oldest
# file queued for ingestion and not yet ingested (served by ingest_request_open); for
# ``staged``, its oldest batch loaded and not yet staged (the ledger row's creation);
# for the time stages, their oldest unfinished window's last change (a window's row is
# reused by every rerun, so its creation says nothing). Served by pipeline_ledger_open.
PIPELINE_LAG_SQL = """
SELECT 'raw', extract(epoch FROM now() - min(queued_at))::float8
FROM ingest_request WHERE status IN ('queued', 'running')
UNION ALL
SELECT 'staged', extract(epoch FROM now() - min(l.created_at))::float8
FROM pipeline_ledger l JOIN ingest_batch b ON b.id = l.batch_id
WHERE l.stage = 'staged' AND l.status <> 'done' AND b.status IN ('loaded', 'broken')
UNION ALL
SELECT stage, extract(epoch FROM now() - min(updated_at))::float8
FROM pipeline_ledger WHERE stage <> 'staged' AND status <> 'done' GROUP BY stage
UNION ALL
SELECT stage, extract(epoch FROM now() - min(marked_at))::float8
FROM pipeline_dirty GROUP BY stage
UNION ALL
SELECT stage, extract(epoch FROM now() - min(marked_at))::float8
FROM pipeline_delta GROUP BY stage
"""


@dataclass(frozen=True)
class PipelineLag:
    """Seconds of the oldest pending work of each stage that has some."""

    stages: dict[str, float]

    @property
    def seconds(self) -> float:
        """The pipeline's lag: its most lagging stage's, 0 when nothing waits."""
        return max(self.stages.values(), default=0.0)

    @property
    def behind(self) -> str | None:
        """The most lagging stage, None when nothing waits."""
        return max(self.stages, key=self.stages.__getitem__) if self.stages else None


def pipeline_lag(cursor) -> PipelineLag:
    """The lag of each stage (PIPELINE_LAG_SQL) read with ``cursor`` (a DB-API cursor:
    Django's or psycopg's, so that a caller chooses its connection and its bounds)."""
    cursor.execute(PIPELINE_LAG_SQL)
    stages: dict[str, float] = {}
    for stage, age in cursor.fetchall():
        if age is not None:
            stages[stage] = max(stages.get(stage, 0.0), float(age))
    return PipelineLag(stages)


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


@dataclass(frozen=True)
class DeadLetter:
    """A message of the ``dead_letter`` queue, with the error its task failed with."""

    task_id: str | None
    task_name: str | None
    args: list
    kwargs: dict
    queue: str | None  # the queue that dead-lettered it (latest x-death entry)
    reason: str | None  # rejected, expired, ...
    died_at: datetime | None
    deaths: int
    error: str | None = None  # from pipeline_task_failure; None: no failure recorded
    failed_at: datetime | None = None


def dead_letter_of(message) -> DeadLetter:
    """A dead-lettered Celery message (protocol 2: task and id in the headers, body
    ``[args, kwargs, embed]``; protocol 1: all of them in the body), without its error."""
    headers = message.headers or {}
    try:
        body = json.loads(message.body)
    except (TypeError, ValueError):
        body = None
    if "task" in headers:
        task_id, task_name = headers.get("id"), headers.get("task")
        args, kwargs = (body[0], body[1]) if isinstance(body, list) and len(body) >= 2 else ([], {})
    else:
        body = body if isinstance(body, dict) else {}
        task_id, task_name = body.get("id"), body.get("task")
        args, kwargs = body.get("args") or [], body.get("kwargs") or {}
    deaths = headers.get("x-death") or []
    latest = deaths[0] if deaths else {}
    return DeadLetter(
        task_id=task_id,
        task_name=task_name,
        args=list(args),
        kwargs=dict(kwargs),
        queue=latest.get("queue") or headers.get("x-first-death-queue"),
        reason=latest.get("reason") or headers.get("x-first-death-reason"),
        died_at=latest.get("time"),
        deaths=sum(int(death.get("count", 1)) for death in deaths),
    )


def dead_letters(limit: int | None = None) -> tuple[int, list[DeadLetter]]:
    """The number of messages in ``dead_letter`` and the first ``limit`` of them, in
    queue order, each joined with its task's recorded error.

    The messages are read without acknowledgement and given back (``basic.recover``
    with requeue) before the channel closes: RabbitMQ puts each back in its place,
    so listing neither loses nor reorders them.
    """
    with app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            declare_dead_letter(channel)
            _name, count, _consumers = channel.queue_declare(DEAD_LETTER_QUEUE.name, passive=True)
            letters = []
            try:
                for _ in range(count if limit is None else min(count, limit)):
                    message = channel.basic_get(DEAD_LETTER_QUEUE.name, no_ack=False)
                    if message is None:
                        break
                    letters.append(dead_letter_of(message))
            finally:
                recover(channel)
        finally:
            channel.close()
    failures = TaskFailure.objects.in_bulk([x.task_id for x in letters if x.task_id])
    return count, [
        replace(x, error=failures[x.task_id].error, failed_at=failures[x.task_id].failed_at)
        if x.task_id in failures
        else x
        for x in letters
    ]
