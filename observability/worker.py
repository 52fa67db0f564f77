"""Each Celery worker exposes its own tasks' metrics on its own port.

Workers may run on hosts of their own, so a worker is scraped where it runs
rather than through the API: with ``METRIFLOW_WORKER_METRICS_PORT`` set (0, the
default, turns it off) the worker's main process serves
``metriflow_worker_tasks_total`` and ``metriflow_worker_task_duration_seconds``
(and nothing else) on that port of ``METRIFLOW_WORKER_METRICS_ADDRESS``.

The tasks run in the prefork pool's child processes, so the children count in
prometheus-client's multiprocess mode: each writes its values to files in a
directory of this worker's own, removed at shutdown (``worker-<pid>`` under
``PROMETHEUS_MULTIPROC_DIR`` when that is set; otherwise a new temporary
directory), and the main process's server sums them at every scrape. The
counts of a child that ended (``--max-tasks-per-child``, a killed child) stay
in the sum.

Signals, not a bootstep: ``worker_init`` (main process, before the pool forks)
chooses the mode, ``worker_ready`` starts the server once the pool is up,
``task_prerun`` / ``task_postrun`` count in whichever process runs the task.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time

from celery import signals

logger = logging.getLogger(__name__)

_state: dict = {"enabled": False, "dir": None, "owned": False, "server": None}
_started: dict[str, float] = {}  # task id -> perf_counter at its start, in this process


def stage_of(task_name: str | None) -> str:
    """``pipeline.stage.daily`` -> ``daily``; another task is labelled with its name."""
    name = task_name or "unknown"
    return name.removeprefix("pipeline.stage.")


def prepare_directory(path: str | None) -> tuple[str, bool]:
    """The multiprocess directory, emptied of earlier counts; whether it was made here.

    Under a given ``PROMETHEUS_MULTIPROC_DIR`` the worker takes a subdirectory of its
    own (``worker-<pid>``): the same variable read by gunicorn from a shared ``.env``
    must not let a worker's start empty the API's live files, nor mix their counts."""
    if not path:
        return tempfile.mkdtemp(prefix="metriflow-worker-metrics-"), True
    path = os.path.join(path, f"worker-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    return path, True


@signals.worker_init.connect
def _on_worker_init(**_) -> None:
    from django.conf import settings

    if not settings.METRIFLOW_WORKER_METRICS_PORT:
        return
    path, owned = prepare_directory(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    from prometheus_client import values

    # Metrics made from now on (every metric of observability.metrics has labels, so
    # its values are made on first use) live in the directory, shared by the children.
    values.ValueClass = values.get_value_class()
    _state.update(enabled=True, dir=path, owned=owned)


@signals.worker_ready.connect
def _on_worker_ready(**_) -> None:
    if not _state["enabled"]:
        return
    from django.conf import settings
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=_state["dir"])
    port = int(settings.METRIFLOW_WORKER_METRICS_PORT)
    address = settings.METRIFLOW_WORKER_METRICS_ADDRESS
    try:
        _state["server"], _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:  # the port is taken (another worker on this host?): say so
        logger.error("worker metrics: cannot listen on %s:%s: %s", address, port, exc)
        return
    logger.info("worker metrics on http://%s:%s/metrics", address, port)


@signals.task_prerun.connect
def _on_task_prerun(task_id=None, **_) -> None:
    if _state["enabled"] and task_id:
        _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _on_task_postrun(task_id=None, task=None, state=None, **_) -> None:
    if not _state["enabled"]:
        return
    from .metrics import WORKER_TASK_DURATION, WORKER_TASKS

    started = _started.pop(task_id, None)
    stage = stage_of(getattr(task, "name", None))
    outcome = (state or "unknown").lower()
    WORKER_TASKS.labels(stage, outcome).inc()
    if started is not None:
        WORKER_TASK_DURATION.labels(stage, outcome).observe(time.perf_counter() - started)


@signals.worker_process_shutdown.connect
def _on_child_exit(pid=None, **_) -> None:
    if _state["enabled"]:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), _state["dir"])


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_) -> None:
    if _state["server"] is not None:
        _state["server"].shutdown()
        _state["server"] = None
    if _state["enabled"] and _state["owned"]:
        shutil.rmtree(_state["dir"], ignore_errors=True)
