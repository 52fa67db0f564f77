"""Entry points of the pipeline for commands, tasks and the admin."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC

from amqp.exceptions import AMQPError, MessageNacked
from celery.utils import uuid
from kombu import Producer
from kombu.exceptions import KombuError

from metriflow.celery import DEAD_LETTER_QUEUE, PIPELINE_EXCHANGE, app, declare_dead_letter, recover

from . import selectors, stages, tasks
from .models import PipelineLedger

logger = logging.getLogger(__name__)


def enqueue_ingest(
    path: str,
    *,
    source: str | None = None,
    file_format: str = "auto",
    force: bool = False,
    batch_size: int | None = None,
) -> str:
    """Queues the ingestion of one file on the raw queue; returns the task id.

    The worker reads the file itself, so the path must be one the workers can
    see (it is made absolute here). The queued file is recorded first
    (``ingest_request``, committed before the message is published), so that the
    backlog, ``pipeline status`` and the lag count it while it waits for a worker;
    a publication that fails marks it failed and raises.
    """
    del batch_size  # workers use the setting
    path = os.path.abspath(path)
    task_id = uuid()
    with stages.connect() as conn:
        conn.execute(
            "INSERT INTO ingest_request (task_id, file_name, source, file_format, forced) "
            "VALUES (%s, %s, %s, %s, %s)",
            (task_id, path, source, file_format, force),
        )
        conn.commit()
        try:
            tasks.ingest_file_task.apply_async(
                kwargs={"path": path, "source": source, "file_format": file_format,
                        "force": force},
                task_id=task_id,
            )  # fmt: skip
        except BaseException as exc:
            conn.execute(
                "UPDATE ingest_request SET status = 'failed', finished_at = now(), error = %s "
                "WHERE task_id = %s",
                (f"not queued: {type(exc).__name__}: {exc}"[:500], task_id),
            )
            conn.commit()
            raise
    return task_id


def start_ingest_request(task_id: str | None) -> None:
    """A worker took the queued file of ``task_id`` (none recorded: nothing to do)."""
    if not task_id:
        return
    with stages.connect() as conn:
        conn.execute(
            "UPDATE ingest_request SET status = 'running', started_at = now() "
            "WHERE task_id = %s AND status <> 'done'",
            (task_id,),
        )
        conn.commit()


def finish_ingest_request(task_id: str | None, batch_id: int | None, outcome: str) -> None:
    """The queued file of ``task_id`` was ingested: its batch and the file's status."""
    if not task_id:
        return
    with stages.connect() as conn:
        conn.execute(
            "UPDATE ingest_request SET status = 'done', finished_at = now(), batch_id = %s, "
            "outcome = %s, error = NULL WHERE task_id = %s",
            (batch_id, outcome, task_id),
        )
        conn.commit()


@dataclass(frozen=True)
class QueuedWindow:
    stage: str
    window: str
    queue: str
    task_id: str
    keys_marked: int | None  # time windows: the stage's keys marked dirty first


def _task_queue(task_name: str) -> str:
    return app.conf.task_routes[task_name]["queue"]


def enqueue_ledger_windows(ledger_ids: list[int]) -> list[QueuedWindow]:
    """Queues a run of each ledger window (e.g. a failed one) on its stage's queue and
    returns at once; a worker of that queue runs it, and the chain goes on from there.

    A staged window re-stages its batch. A time window first gets every key of its
    stage inside it marked dirty (``stages.mark_window_dirty``: a window without
    dirty keys would run and change nothing), then its task is published.
    """
    queued: list[QueuedWindow] = []
    for entry in PipelineLedger.objects.filter(pk__in=ledger_ids).order_by("pk"):
        if entry.stage == "staged":
            task = tasks.stage_batch_task
            result = task.si(batch_id=entry.batch_id).apply_async()
            marked = None
        else:
            marked = stages.mark_window_dirty(entry.stage, entry.window_start, entry.window_end)
            task = tasks.WINDOW_TASKS[entry.stage]
            result = task.si(window_start=entry.window_start.isoformat()).apply_async()
        queued.append(
            QueuedWindow(entry.stage, entry.window, _task_queue(task.name), result.id, marked)
        )
    return queued


RELAY_BATCH = 100  # outbox rows published per transaction
_BROKER_ERRORS = (KombuError, AMQPError, MessageNacked, OSError)


@dataclass(frozen=True)
class Relayed:
    published: int
    error: str | None = None  # why publishing stopped (the broker is away), if it did


def relay_outbox() -> Relayed:
    """Publishes every unpublished outbox message (``pipeline_outbox``) and marks it
    published, oldest first, ``RELAY_BATCH`` per transaction.

    Rows are taken ``FOR UPDATE SKIP LOCKED``: relays running at once (workers after
    their commits, an ingest, the periodic one) each take rows no other one holds, so
    none is published twice by two relays. A message is published with publisher
    confirms (``confirm_publish``: once it returns, the broker has it) before its row
    is marked, so a relay that dies in between leaves the row to be published again
    (at least once; the stages are idempotent). When the broker cannot be reached the
    row keeps its error and attempt count and the relay stops, returning the error.
    """
    published = 0
    while True:
        with stages.connect() as conn:
            rows = conn.execute(
                "SELECT id, task_name, batch_id, window_start FROM pipeline_outbox "
                "WHERE published_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (RELAY_BATCH,),
            ).fetchall()
            sent: list[tuple[int, str]] = []
            error = None
            for outbox_id, task_name, batch_id, window_start in rows:
                if batch_id is not None:
                    kwargs = {"batch_id": batch_id}
                else:
                    kwargs = {"window_start": window_start.astimezone(UTC).isoformat()}
                task_id = uuid()
                try:
                    app.send_task(task_name, kwargs=kwargs, task_id=task_id)
                except _BROKER_ERRORS as exc:
                    error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
                    conn.execute(
                        "UPDATE pipeline_outbox SET attempts = attempts + 1, error = %s "
                        "WHERE id = %s",
                        (error, outbox_id),
                    )
                    break
                sent.append((outbox_id, task_id))
            if sent:
                conn.execute(
                    "UPDATE pipeline_outbox o SET published_at = clock_timestamp(), "
                    "attempts = o.attempts + 1, task_id = v.task_id, error = NULL "
                    "FROM unnest(%s::bigint[], %s::text[]) AS v (id, task_id) WHERE o.id = v.id",
                    ([i for i, _ in sent], [t for _, t in sent]),
                )
            conn.commit()
        published += len(sent)
        if error is not None or len(rows) < RELAY_BATCH:
            return Relayed(published, error)


def relay_outbox_after_commit() -> Relayed:
    """The relay a process runs after committing hand-offs: a broker that cannot be
    reached is one warning line, not an error (the hand-offs stay in the outbox, and
    the periodic relay publishes them once the broker is back)."""
    relayed = relay_outbox()
    if relayed.error is not None:
        logger.warning(
            "broker unreachable, hand-off kept in the outbox for the periodic relay: %s",
            relayed.error,
        )
    return relayed


def record_task_failure(
    *,
    task_id: str | None,
    task_name: str,
    args,
    kwargs,
    error: BaseException | None,
    traceback: str | None,
) -> None:
    """Keeps the error of a task that failed for good (``pipeline_task_failure``), where
    ``pipeline dead-letters`` finds it by the dead-lettered message's task id."""
    if not task_id:
        return
    text = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
    with stages.connect() as conn:
        conn.execute(
            "INSERT INTO pipeline_task_failure (task_id, task_name, args, kwargs, error, "
            "traceback, worker) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (task_id) DO UPDATE SET task_name = EXCLUDED.task_name, "
            "args = EXCLUDED.args, kwargs = EXCLUDED.kwargs, error = EXCLUDED.error, "
            "traceback = EXCLUDED.traceback, worker = EXCLUDED.worker, "
            "failures = pipeline_task_failure.failures + 1, failed_at = now()",
            (task_id, task_name, json.dumps(list(args or ()), default=str),
             json.dumps(dict(kwargs or {}), default=str), text[:4000],
             (traceback or "")[-20000:] or None, stages.worker_name()),
        )  # fmt: skip
        # A queued file whose ingestion failed for good is no longer pending.
        conn.execute(
            "UPDATE ingest_request SET status = 'failed', finished_at = now(), error = %s "
            "WHERE task_id = %s AND status <> 'done'",
            (text[:4000], task_id),
        )
        conn.commit()


@dataclass(frozen=True)
class Requeued:
    letter: selectors.DeadLetter
    queue: str | None  # None: left in dead_letter (its original queue is not a stage queue)


def requeue_dead_letters() -> list[Requeued]:
    """Sends every message of ``dead_letter`` back to the queue that dead-lettered it
    (the latest x-death entry) and removes it from ``dead_letter``.

    Each message is published (with publisher confirms, body and headers as they
    are, the target queue declared first so that it is routable) before its dead
    letter is acknowledged: a crash in between leaves it in both queues, never in
    neither (tasks are idempotent). A message whose original queue is not a stage
    queue is left where it is, in its place.
    """
    stage_queues = {queue.name: queue for queue in app.conf.task_queues}
    done: list[Requeued] = []
    with app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            declare_dead_letter(channel)
            _name, count, _consumers = channel.queue_declare(DEAD_LETTER_QUEUE.name, passive=True)
            producer = Producer(channel, exchange=PIPELINE_EXCHANGE, auto_declare=False)
            held = False
            for _ in range(count):  # what is there now: a letter dying again waits
                message = channel.basic_get(DEAD_LETTER_QUEUE.name, no_ack=False)
                if message is None:
                    break
                letter = selectors.dead_letter_of(message)
                queue = stage_queues.get(letter.queue or "")
                if queue is None:
                    held = True
                    done.append(Requeued(letter, None))
                    continue
                queue.bind(channel).declare()
                producer.publish(
                    message.body,
                    routing_key=queue.routing_key,
                    headers=message.headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=2,
                    **{k: v for k, v in message.properties.items()
                       if k in ("correlation_id", "reply_to", "priority")},
                )  # fmt: skip
                channel.basic_ack(message.delivery_tag)
                done.append(Requeued(letter, queue.name))
            if held:
                recover(channel)  # back in their places
        finally:
            channel.close()
    return done
