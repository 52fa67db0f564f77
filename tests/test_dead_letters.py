"""Dead letters are kept: a worker started on one stage queue (as the README starts
them) declares the dead-letter exchange and queue itself, a task that fails for
good lands in ``dead_letter`` with its error recorded, ``pipeline dead-letters``
lists them without consuming them, and ``--requeue`` sends them back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from kombu import Connection

from metriflow.celery import app
from pipeline.models import TaskFailure

from .conftest import REPO_ROOT, run_manage
from .processes import stop
from .rabbitmq import app_broker, fresh_vhost, queue_depth, queue_state, take_messages

pytestmark = pytest.mark.usefixtures("pipeline_db")

# Windows of the daily stage must start on a UTC month: these fail with ValueError,
# a data error, which is not retried.
BAD_WINDOWS = ("2024-01-15T00:00:00+00:00", "2024-02-10T06:00:00+00:00")


def start_worker(env: dict, queue: str, log_path) -> subprocess.Popen:
    """One worker on one queue, as the README starts them."""
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", queue,
         "-n", f"dead-letters-{os.getpid()}@%h", "--concurrency", "1", "--without-mingle",
         "--without-gossip", "--loglevel", "INFO"],
        cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def peek(url: str, queue: str) -> list[tuple[str, str, dict]]:
    """(task id, task name, kwargs) of every message of ``queue``, left in the queue."""
    seen = []
    with Connection(url) as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            _args, kwargs, _embed = json.loads(message.body)
            seen.append((message.headers["id"], message.headers["task"], kwargs))
        channel.close()  # unacknowledged: back in their places
    return seen


def test_a_task_failed_for_good_is_kept_listed_and_requeued(tmp_path, test_database_env,
                                                            monkeypatch):  # fmt: skip
    with fresh_vhost() as url, app_broker(url, monkeypatch):
        env = {**test_database_env, "CELERY_BROKER_URL": url}
        worker = start_worker(env, "daily", tmp_path / "worker.log")
        ids = []
        try:
            wait_for(lambda: (queue_state(url, "daily") or (0, 0))[1] >= 1, "the worker")
            for window in BAD_WINDOWS:
                ids.append(app.send_task("pipeline.stage.daily",
                                         kwargs={"window_start": window}).id)  # fmt: skip
            wait_for(lambda: queue_depth(url, "dead_letter") == 2, "two dead letters")
            wait_for(lambda: TaskFailure.objects.filter(task_id__in=ids).count() == 2,
                     "their failures recorded")  # fmt: skip

            # In dead_letter, in the order they failed, with their task and arguments.
            expected = [(task_id, "pipeline.stage.daily", {"window_start": window})
                        for task_id, window in zip(ids, BAD_WINDOWS, strict=True)]  # fmt: skip
            assert peek(url, "dead_letter") == expected
            for task_id, window in zip(ids, BAD_WINDOWS, strict=True):
                failure = TaskFailure.objects.get(task_id=task_id)
                assert (failure.task_name, failure.kwargs, failure.failures) == (
                    "pipeline.stage.daily", {"window_start": window}, 1,
                )  # fmt: skip
                assert failure.error.startswith("ValueError: a daily window starts on a UTC month")

            # Listing shows task, arguments, error, time and queue, and consumes nothing.
            runs = [run_manage("pipeline", "dead-letters", env=env) for _ in range(2)]
            assert [run.stderr for run in runs] == ["", ""]  # no warning from the channel
            listings = [run.stdout for run in runs]
            assert listings[0] == listings[1]
            listing = listings[0]
            assert listing.startswith("2 dead letter(s) in dead_letter\n")
            blocks = listing.split("\n- ")[1:]  # one per dead letter, in queue order
            assert len(blocks) == 2
            for block, task_id, window in zip(blocks, ids, BAD_WINDOWS, strict=True):
                call, origin, error = block.strip().split("\n")
                assert call == f'pipeline.stage.daily(window_start="{window}")'
                assert origin.strip().startswith(
                    f"task id {task_id}, from queue daily (rejected at "
                )
                assert origin.strip().endswith("UTC, 1 death(s))")
                assert error.strip().startswith(
                    "error: ValueError: a daily window starts on a UTC month"
                )
            assert peek(url, "dead_letter") == expected  # neither lost nor reordered
        finally:
            stop(worker)

        # With no worker on it, requeued letters wait on their own queue.
        out = run_manage("pipeline", "dead-letters", "--requeue", env=env).stdout
        for task_id, window in zip(ids, BAD_WINDOWS, strict=True):
            assert (
                f'requeued pipeline.stage.daily[{task_id}](window_start="{window}") -> daily' in out
            )
        assert out.rstrip().endswith("2 dead letter(s) requeued, 0 left")
        assert queue_depth(url, "dead_letter") == 0
        back = take_messages(url, "daily")
        assert [(m.headers["id"], m.headers["task"], json.loads(m.body)[1]) for m in back] == [
            (task_id, "pipeline.stage.daily", {"window_start": window})
            for task_id, window in zip(ids, BAD_WINDOWS, strict=True)
        ]
        assert run_manage("pipeline", "dead-letters", env=env).stdout.startswith(
            "0 dead letter(s) in dead_letter"
        )
    TaskFailure.objects.filter(task_id__in=ids).delete()
