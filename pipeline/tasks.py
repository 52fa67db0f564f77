"""Celery tasks of the pipeline: thin wrappers that parse arguments and call services.

Tasks take ids and paths, never data, and re-read the world from the database.
Each task is declared with a stable explicit name and routed to its stage's
queue (``metriflow/celery.py``).
"""

from celery import shared_task

from .ingest import ingest_file


@shared_task(
    name="pipeline.stage.raw",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def ingest_file_task(
    *, path: str, source: str | None = None, file_format: str = "auto", force: bool = False
) -> dict:
    """Ingests one file (the raw stage). Idempotent: a rerun resumes or skips by checksum."""
    result = ingest_file(path, source=source, file_format=file_format, force=force)
    return {"batch_id": result.batch_id, "status": result.status, "accepted": result.accepted}
