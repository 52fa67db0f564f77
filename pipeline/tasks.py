"""Celery tasks of the pipeline: thin wrappers that parse arguments and call services.

Tasks take ids and ISO UTC strings, never data, and re-read the world from
the database. Each has a stable explicit name, ``pipeline.stage.<stage>``,
routed to its stage's queue (``metriflow/celery.py``). At-least-once delivery
with idempotent effect: ``acks_late`` with reject on worker loss (a killed
worker's message is redelivered), retries with backoff and jitter for
transient database errors only, and other failures rejected to the dead-letter
queue, their error kept by task id (``record_task_failure`` on ``task_failure``,
which Celery sends only for a failure that is final: not for a retry, nor for a
message requeued after a lost worker). Every window is a task of its own: one
that fails has been recorded failed in the ledger and run history by the stage
before it is dead-lettered, and holds no other window back.

The hand-off: a stage task's window queues the windows that come next in its own
transaction (the ledger's ``queued`` state and an outbox message each, once per
window however many windows lead to it), and the task relays the outbox after
the commit (``services.relay_outbox``). So does ingestion after its batch
committed (``trigger_staged``), and ``pipeline.relay`` runs it periodically
(beat), so a hand-off written while the broker was away is published once it is
back. The periodic sweep queues what is still pending, dirty or past its time
limit, so a lost message only delays work.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime

import psycopg
from celery import shared_task
from celery.signals import task_failure
from django.conf import settings

from . import services, stages
from .ingest import ingest_file

logger = logging.getLogger(__name__)

TRANSIENT = (psycopg.OperationalError,)
BUSY_RETRY_SECONDS = 10
STAGE_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(name="pipeline.stage.raw", bind=True, **STAGE_TASK_OPTIONS)
def ingest_file_task(
    self, *, path: str, source: str | None = None, file_format: str = "auto", force: bool = False
) -> dict:
    """Ingests one file (the raw stage). Idempotent: a rerun resumes or skips by checksum.

    Its ``ingest_request`` row (``services.enqueue_ingest``) is marked running, then
    done once the batch and its hand-off are committed, so the backlog never loses
    sight of the file in between; a final failure marks it failed (``task_failure``)."""
    services.start_ingest_request(self.request.id)
    result = ingest_file(
        path, source=source, file_format=file_format, force=force, on_committed=trigger_staged
    )
    services.finish_ingest_request(self.request.id, result.batch_id, result.status)
    return {"batch_id": result.batch_id, "status": result.status, "accepted": result.accepted}


@contextmanager
def _relayed_if_failed():
    """A failed window hands off what waited for it (``stages._ledger_fail``): relay
    that before the error goes on to Celery. The relay's own failure is only logged
    (the periodic relay publishes what it left); the stage's error is what counts."""
    try:
        yield
    except Exception:
        try:
            services.relay_outbox_after_commit()
        except Exception:
            logger.warning("relay after a failed window failed", exc_info=True)
        raise


@shared_task(name="pipeline.stage.staged", bind=True, **STAGE_TASK_OPTIONS)
def stage_batch_task(self, *, batch_id: int) -> dict:
    with _relayed_if_failed():
        run = stages.run_staged(batch_id, task_id=self.request.id, hand_off=True)
    if run.status == "busy":  # another worker holds it; its outcome is checked later
        stage_batch_task.si(batch_id=batch_id).apply_async(countdown=BUSY_RETRY_SECONDS)
    else:
        services.relay_outbox_after_commit()
    return {"stage": run.stage, "status": run.status, "rows_out": run.rows_out}


def _window_task(stage: str):
    @shared_task(name=f"pipeline.stage.{stage}", bind=True, **STAGE_TASK_OPTIONS)
    def run_window_task(self, *, window_start: str) -> dict:
        start = datetime.fromisoformat(window_start)
        with _relayed_if_failed():
            run = stages.run_window(stage, start, task_id=self.request.id, hand_off=True)
        if run.status == "busy":  # another worker holds it; its outcome is checked later
            WINDOW_TASKS[stage].si(window_start=window_start).apply_async(
                countdown=BUSY_RETRY_SECONDS
            )
        else:
            services.relay_outbox_after_commit()
        return {"stage": stage, "status": run.status, "rows_out": run.rows_out}

    return run_window_task


WINDOW_TASKS = {stage: _window_task(stage) for stage in stages.TIME_STAGES}


@shared_task(name="pipeline.sweep", ignore_result=True, acks_late=True)
def sweep_task() -> dict:
    """Queues every pending batch, every window past its time limit and every window
    that still holds dirty keys (``stages.sweep``), then relays the outbox."""
    counts = stages.sweep()
    counts["published"] = services.relay_outbox().published
    return counts


@shared_task(name="pipeline.relay", ignore_result=True, acks_late=True)
def relay_task() -> dict:
    """Publishes the outbox's unpublished hand-offs (run by beat)."""
    result = services.relay_outbox()
    return {"published": result.published, "error": result.error}


def trigger_staged(batch_id: int | None) -> None:
    """After an ingest batch committed (its hand-off in the outbox when triggering is
    on): publish it. With the broker away this warns in one line and returns; the
    periodic relay publishes it once the broker is back."""
    if batch_id is not None and settings.METRIFLOW_PIPELINE_TRIGGER:
        services.relay_outbox_after_commit()


@task_failure.connect
def record_task_failure(sender=None, task_id=None, exception=None, args=None, kwargs=None,
                        einfo=None, **_) -> None:  # fmt: skip
    """Keeps the error of a task that failed for good, for ``pipeline dead-letters``."""
    services.record_task_failure(
        task_id=task_id,
        task_name=getattr(sender, "name", str(sender)),
        args=args,
        kwargs=kwargs,
        error=exception,
        traceback=str(einfo) if einfo is not None else None,
    )
