"""Structured logs: one JSON object per line in production, readable lines in development.

``LOGGING`` (``metriflow/settings/logs.py``) sends every record of the web app, the
Celery workers (``metriflow/celery.py`` hands Celery's logging to it) and the management
commands to one stream handler on stderr, formatted by :class:`JsonFormatter`
(``METRIFLOW_LOG_FORMAT=json``) or :class:`ConsoleFormatter` (``console``). Fields passed
with ``extra=`` become keys of the JSON object, or ``key=value`` pairs after the message.

Two events carry the pipeline's work, one line each (docs/operations.md, "Logs"):

- ``stage_run``: every run of a stage over one window or batch, with its outcome
  (``done``, ``failed``, ``busy``), rows in and out, seconds, task id and worker; the
  ``done`` and ``failed`` ones are the rows of ``pipeline_run``.
- ``ingest_file``: every file ingested, with its batch, status, counts, bytes and seconds;
  its counts are those of its ``ingest_batch`` row.

Both are written by decorators on the functions that do the work (``run_staged``,
``run_window``, ``ingest_file``), so that every caller (a Celery task, ``manage.py
pipeline run``, ``manage.py ingest``, the admin) logs the same line once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

if TYPE_CHECKING:
    from pipeline.ingest.service import FileResult
    from pipeline.stages import StageRun

LOG_FORMATS = ("json", "console")
STAGE_RUN_LOGGER = logging.getLogger("metriflow.pipeline.runs")
INGEST_LOGGER = logging.getLogger("metriflow.pipeline.ingest")
# Attributes every LogRecord has; anything else on a record came with ``extra=``.
_STANDARD = frozenset(RESERVED_ATTRS) | {"taskName", "color_message"}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: ``time`` (UTC, ms), ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exc_info`` (the traceback) when there is one."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("json_default", _plain)
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__("{message}", *args, style="{", **kwargs)

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data["time"] = _timestamp(record)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["process"] = record.process
        super().add_fields(log_data, record, message_dict)


class ConsoleFormatter(logging.Formatter):
    """``2024-01-01T10:00:00.123Z INFO logger message key=value ...``: one line a record
    (a traceback follows on its own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={_console_value(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None
        )
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def _console_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return repr(text) if (not text or any(c.isspace() for c in text)) else text


# ------------------------------------------------------------------ stage runs


def log_stage_run(
    run: StageRun,
    *,
    seconds: float,
    batch_id: int | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    task_id: str | None = None,
    worker: str | None = None,
) -> None:
    """The one line of a stage run. Rows are given for a ``done`` run only (a failed
    run's are unknown, as in ``pipeline_run``; a busy one did no work)."""
    done = run.status == "done"
    fields = {
        "event": "stage_run",
        "stage": run.stage,
        "window": run.window,
        "window_start": window_start.isoformat() if window_start else None,
        "window_end": window_end.isoformat() if window_end else None,
        "batch_id": batch_id,
        "task_id": task_id,
        "rows_in": run.rows_in if done else None,
        "rows_out": run.rows_out if done else None,
        "seconds": round(seconds, 6),
        "outcome": run.status,
        "worker": worker,
        "error": run.error,
    }
    level = logging.ERROR if run.status == "failed" else logging.INFO
    STAGE_RUN_LOGGER.log(
        level, "%s %s %s in %.3f s", run.stage, run.window, run.status, seconds, extra=fields
    )


def logged_stage_run(func: Callable[..., StageRun]) -> Callable[..., StageRun]:
    """Logs each call of ``run_staged(batch_id, *, task_id)`` or ``run_window(stage, start,
    *, task_id)`` as one ``stage_run`` line: its result, or ``failed`` with the error it
    raised (which is raised on)."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> StageRun:
        from pipeline import stages

        arguments = signature.bind(*args, **kwargs).arguments
        batch_id = arguments.get("batch_id")
        stage = "staged" if batch_id is not None else arguments["stage"]
        start = end = None
        if batch_id is None:
            start = arguments["start"]
            unit = stages.WINDOW_UNIT.get(stage)
            end = stages._window_end(start, unit) if unit else None
        context = {
            "batch_id": batch_id,
            "window_start": start,
            "window_end": end,
            "task_id": arguments.get("task_id"),
            "worker": stages.worker_name(),
        }
        started = time.perf_counter()
        try:
            run = func(*args, **kwargs)
        except Exception as exc:
            window = f"batch {batch_id}" if batch_id is not None else None
            if window is None:
                window = stages.window_label(start, end) if end else str(start)
            failed = stages.StageRun(stage, window, "failed", error=stages._error_text(exc))
            log_stage_run(failed, seconds=time.perf_counter() - started, **context)
            raise
        log_stage_run(run, seconds=time.perf_counter() - started, **context)
        return run

    return wrapper


# ------------------------------------------------------------------ ingestion


def _file_bytes(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def log_ingest_file(result: FileResult, *, file_format: str | None = None) -> None:
    """The one line of an ingested file: its batch and what became of it. ``format`` is
    the layout the file was read as (array, ndjson, seed), or the one asked for when it
    could not be read."""
    fields = {
        "event": "ingest_file",
        "path": result.path,
        "source": result.source,
        "format": getattr(result, "layout", None) or file_format,
        "batch_id": result.batch_id,
        "status": result.status,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "bytes": _file_bytes(result.path),
        "seconds": round(result.seconds, 6),
        "resumed_from": result.resumed_from or None,
        "error": result.message or None,
    }
    # The message is the line ``manage.py ingest`` prints for the file.
    INGEST_LOGGER.info("%s", result.summary(), extra=fields)


def logged_ingest_file(func: Callable[..., FileResult]) -> Callable[..., FileResult]:
    """Logs each call of ``ingest_file(path, *, file_format, ...)`` as one ``ingest_file``
    line: its result, or ``failed`` with the reason of the error it raised (raised on)."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> FileResult:
        arguments = signature.bind(*args, **kwargs).arguments
        file_format = arguments.get("file_format", "auto")
        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            from pipeline.ingest.service import FileResult

            failed = FileResult(
                path=str(arguments["path"]),
                source=arguments.get("source"),
                status="failed",
                seconds=time.perf_counter() - started,
                message=getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}",
            )
            log_ingest_file(failed, file_format=file_format)
            raise
        log_ingest_file(result, file_format=file_format)
        return result

    return wrapper
