"""How much work the pipeline still has, and waiting until it has none.

``manage.py pipeline wait`` (and through it ``make demo``) polls this while the
Celery workers run the chain: it returns when no file queued for ingestion
(``ingest --async``) waits for or is being read by a worker, no batch is loading
or waiting to be staged, no window is pending, queued or running, no hand-off
waits in the outbox for the broker, and no stage holds a dirty key.
A window that failed is reported, not waited for: once nothing is loading or
running for ``STALL_SECONDS`` and a window has failed, waiting stops (its task
is retried by Celery or re-enqueued by the periodic sweep; ``pipeline status``
and the admin show it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection

STALL_SECONDS = 10.0
INGEST_NAMES = 5  # queued files named by the backlog


@dataclass(frozen=True)
class Backlog:
    loading: int = 0  # ingest batches still being written
    open: dict[str, int] = field(default_factory=dict)  # stage -> pending/queued/running
    dirty: dict[str, int] = field(default_factory=dict)  # stage -> dirty keys
    failed: tuple[tuple[str, str, str], ...] = ()  # (stage, window, error)
    queued: int = 0  # of the open windows: queued, waiting for a worker
    running: int = 0  # of the open windows: running now
    unpublished: int = 0  # hand-offs in the outbox not yet on the broker
    ingests: int = 0  # files queued for ingestion (ingest --async), not yet ingested
    ingesting: int = 0  # of those: taken by a worker
    ingest_files: tuple[str, ...] = ()  # the oldest INGEST_NAMES of them

    @property
    def settled(self) -> bool:
        return not (
            self.ingests
            or self.loading
            or any(self.open.values())
            or any(self.dirty.values())
            or self.unpublished
        )

    @property
    def idle(self) -> bool:
        """Nothing is being loaded or run right now (work may still wait in a queue)."""
        return not (self.ingesting or self.loading or any(self.open.values()))

    def describe(self) -> str:
        parts = []
        if self.ingests:
            names = ", ".join(self.ingest_files)
            more = self.ingests - len(self.ingest_files)
            parts.append(
                f"{self.ingests} file(s) queued for ingestion ({self.ingesting} being read): "
                + names
                + (f" and {more} more" if more > 0 else "")
            )
        if self.loading:
            parts.append(f"{self.loading} batch(es) loading")
        if any(self.open.values()):
            parts.append(
                "open "
                + ", ".join(f"{s} {n}" for s, n in self.open.items() if n)
                + f" ({self.queued} queued, {self.running} running)"
            )
        if self.unpublished:
            parts.append(f"{self.unpublished} hand-off(s) waiting for the broker")
        if any(self.dirty.values()):
            parts.append(
                "dirty keys " + ", ".join(f"{s} {n:,}" for s, n in self.dirty.items() if n)
            )
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "; ".join(parts) or "nothing pending"


def backlog() -> Backlog:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'running') FROM ingest_request "
            "WHERE status IN ('queued', 'running')"
        )
        ingests, ingesting = cursor.fetchone()
        cursor.execute(
            "SELECT file_name FROM ingest_request WHERE status IN ('queued', 'running') "
            "ORDER BY queued_at, id LIMIT %s",
            [INGEST_NAMES],
        )
        ingest_files = tuple(name for (name,) in cursor.fetchall())
        cursor.execute("SELECT count(*) FROM ingest_batch WHERE status = 'loading'")
        loading = cursor.fetchone()[0]
        cursor.execute(
            "SELECT stage, status, count(*) FROM pipeline_ledger "
            "WHERE status IN ('pending', 'queued', 'running') GROUP BY 1, 2"
        )
        open_windows: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for stage, status, count in cursor.fetchall():
            open_windows[stage] = open_windows.get(stage, 0) + count
            by_status[status] = by_status.get(status, 0) + count
        cursor.execute("SELECT count(*) FROM pipeline_outbox WHERE published_at IS NULL")
        unpublished = cursor.fetchone()[0]
        cursor.execute(
            "SELECT stage, count(*) FROM (SELECT stage FROM pipeline_dirty "
            "UNION ALL SELECT stage FROM pipeline_delta) AS pending GROUP BY 1"
        )
        dirty = dict(cursor.fetchall())
        cursor.execute(
            "SELECT stage, coalesce('batch ' || batch_id, to_char(window_start AT TIME ZONE "
            "'UTC', 'YYYY-MM-DD')), coalesce(error, '') FROM pipeline_ledger "
            "WHERE status = 'failed' ORDER BY updated_at DESC LIMIT 20"
        )
        failed = tuple(cursor.fetchall())
    return Backlog(
        loading,
        open_windows,
        dirty,
        failed,
        queued=by_status.get("queued", 0),
        running=by_status.get("running", 0),
        unpublished=unpublished,
        ingests=ingests,
        ingesting=ingesting,
        ingest_files=ingest_files,
    )


def wait_until_settled(
    timeout: float,
    report: Callable[[float, Backlog], None],
    interval: float = 1.0,
) -> Backlog:
    """Polls until nothing is pending or ``timeout`` seconds passed; ``report(elapsed,
    backlog)`` is called whenever the backlog changes. Returns the last backlog."""
    started = time.monotonic()
    last = None
    idle_since = None
    while True:
        current = backlog()
        connection.close()  # a fresh snapshot each time; no long-lived idle transaction
        now = time.monotonic()
        elapsed = now - started
        if current != last:
            report(elapsed, current)
            last = current
        idle_since = (idle_since or now) if current.idle and current.failed else None
        stalled = idle_since is not None and now - idle_since >= STALL_SECONDS
        if current.settled or stalled or elapsed >= timeout:
            return current
        time.sleep(interval)
