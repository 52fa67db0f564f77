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
before it is dead-lettered, and holds no other window back. A stage task that finished its window
enqueues the next stage's window with an immutable signature; the periodic
sweep re-enqueues whatever is still pending or dirty, so a lost message only
delays work.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from celery import shared_task
from celery.signals import task_failure
from django.conf import settings

from . import services, stages
from .ingest import ingest_file

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


@shared_task(name="pipeline.stage.raw", **STAGE_TASK_OPTIONS)
def ingest_file_task(
    *, path: str, source: str | None = None, file_format: str = "auto", force: bool = False
) -> dict:
    """Ingests one file (the raw stage). Idempotent: a rerun resumes or skips by checksum."""
    result = ingest_file(
        path, source=source, file_format=file_format, force=force, on_committed=trigger_staged
    )
    return {"batch_id": result.batch_id, "status": result.status, "accepted": result.accepted}


@shared_task(name="pipeline.stage.staged", bind=True, **STAGE_TASK_OPTIONS)
def stage_batch_task(self, *, batch_id: int) -> dict:
    run = stages.run_staged(batch_id, task_id=self.request.id)
    if run.status == "done":
        enqueue_dirty_windows("page")
    elif run.status == "busy":  # another worker holds it; its outcome is checked later
        stage_batch_task.si(batch_id=batch_id).apply_async(countdown=BUSY_RETRY_SECONDS)
    return {"stage": run.stage, "status": run.status, "rows_out": run.rows_out}


def _window_task(stage: str):
    @shared_task(name=f"pipeline.stage.{stage}", bind=True, **STAGE_TASK_OPTIONS)
    def run_window_task(self, *, window_start: str) -> dict:
        start = datetime.fromisoformat(window_start)
        run = stages.run_window(stage, start, task_id=self.request.id)
        following = stages.NEXT_STAGE[stage]
        if run.status == "done" and run.rows_in and following:
            unit = stages.WINDOW_UNIT[following]
            next_start = start if unit == stages.WINDOW_UNIT[stage] else start.replace(month=1)
            WINDOW_TASKS[following].si(window_start=next_start.isoformat()).apply_async()
        elif run.status == "busy":  # another worker holds it; its outcome is checked later
            WINDOW_TASKS[stage].si(window_start=window_start).apply_async(
                countdown=BUSY_RETRY_SECONDS
            )
        return {"stage": stage, "status": run.status, "rows_out": run.rows_out}

    return run_window_task


WINDOW_TASKS = {stage: _window_task(stage) for stage in stages.TIME_STAGES}


@shared_task(name="pipeline.sweep", ignore_result=True, acks_late=True)
def sweep_task() -> dict:
    """Re-enqueues every pending batch and every stage window that still holds dirty keys."""
    batches = stages.pending_batches()
    for batch_id in batches:
        stage_batch_task.si(batch_id=batch_id).apply_async()
    windows = sum(enqueue_dirty_windows(stage) for stage in stages.TIME_STAGES)
    return {"batches": len(batches), "windows": windows}


def enqueue_dirty_windows(stage: str) -> int:
    starts = stages.dirty_windows(stage)
    for start in starts:
        WINDOW_TASKS[stage].si(window_start=start.isoformat()).apply_async()
    return len(starts)


def trigger_staged(batch_id: int | None) -> None:
    """After an ingest batch committed: start the chain for it (when triggering is on)."""
    if batch_id is not None and settings.METRIFLOW_PIPELINE_TRIGGER:
        stage_batch_task.si(batch_id=batch_id).apply_async()


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
