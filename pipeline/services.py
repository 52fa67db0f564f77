"""Entry points of the pipeline for commands, tasks and the admin."""

import logging
import os

from . import stages
from .models import PipelineLedger
from .tasks import ingest_file_task

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


def rerun_ledger_windows(ledger_ids: list[int]) -> list[stages.StageRun]:
    """Re-runs ledger windows (e.g. failed ones) in-process, marking their keys dirty first.

    A staged window re-stages its batch; a time window gets every staged
    page-day inside it marked dirty and is drained through every later stage.
    """
    runs: list[stages.StageRun] = []
    for entry in PipelineLedger.objects.filter(pk__in=ledger_ids).order_by("pk"):
        try:
            if entry.stage == "staged":
                runs.append(stages.run_staged(entry.batch_id))
                continue
            stages.mark_range_dirty(entry.window_start, entry.window_end)
            runs.extend(stages.drain(stages.TIME_STAGES))
        except Exception:  # the ledger row records the error; the caller reports the run
            logger.exception("re-run of ledger window %s failed", entry.pk)
            window = f"batch {entry.batch_id}" if entry.batch_id else f"{entry.window_start}"
            runs.append(stages.StageRun(entry.stage, window, "failed"))
    return runs
