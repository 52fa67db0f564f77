"""Entry points of the pipeline for commands, tasks and the admin."""

import os

from .tasks import ingest_file_task


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
    see (it is made absolute here).
    """
    del batch_size  # workers use the setting
    result = ingest_file_task.apply_async(
        kwargs={
            "path": os.path.abspath(path),
            "source": source,
            "file_format": file_format,
            "force": force,
        }
    )
    return result.id
