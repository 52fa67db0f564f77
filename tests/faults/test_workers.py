"""Faults of the workers and of the messages they take: a worker killed mid-stage
(twice in a row), a warm shutdown mid-stage, the same task delivered to two workers
at once, and poison messages. The machine's RabbitMQ serves them, in a vhost of
each test's own; the sweep is never run, so whatever the chain needs must come from
its own messages."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import suppress

import pytest
from kombu import Connection, Exchange, Producer

from metriflow.celery import PIPELINE_EXCHANGE, app
from pipeline import stages

from ..rabbitmq import queue_depth, take_messages
from .harness import (
    WORKER_QUEUES,
    assert_equal_to_a_clean_run,
    held,
    ingest,
    query,
    settled_state,
    stage_backends,
    wait_for,
    wait_until_settled,
    waiting_stage_backends,
)

pytestmark = pytest.mark.slow


def assert_nothing_failed(conninfo: str, url: str) -> None:
    assert query(conninfo, "SELECT task_name, error FROM pipeline_task_failure") == []
    assert queue_depth(url, "dead_letter") in (0, None)


def _steady(read):
    """A condition for wait_for: ``read()``'s value once it is the same a second later."""

    def condition():
        first = read()
        time.sleep(1)
        return first if first and read() == first else None

    return condition


def test_a_worker_killed_mid_stage_twice_in_a_row_only_delays_the_result(
    dataset, test_db, shared_broker, spawn
):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": shared_broker}
    with held(conninfo, "agg_daily"):
        first = spawn(env, "first")
        first.wait_ready()
        ingest(dataset, env)
        held_first = wait_for(lambda: waiting_stage_backends(conninfo, "daily"),
                              "the daily stage held in the first worker")  # fmt: skip
        first.kill()
        # Every daily backend now is the first worker's: held_first, and any window it
        # began after that was read. Its messages go back to the queue
        # (unacknowledged), its backends end once they notice the lost client
        # (client_connection_check_interval, 2 s), and the next worker takes the
        # same windows.
        of_first = stage_backends(conninfo, "daily") | held_first
        second = spawn(env, "second")
        second.wait_ready()
        wait_for(lambda: not stage_backends(conninfo, "daily") & of_first,
                 "the first worker's backends ended", timeout=30)  # fmt: skip
        held_second = wait_for(
            lambda: waiting_stage_backends(conninfo, "daily") - of_first,
            "the daily stage held in the second worker",
        )
        second.kill()
    wait_for(lambda: not stage_backends(conninfo, "daily") & held_second,
             "the second worker's backends ended")  # fmt: skip
    third = spawn(env, "third")
    wait_until_settled(conninfo, first, second, third, live=(third,))
    third.stop()

    assert_nothing_failed(conninfo, shared_broker)
    # The killed runs left no history: each rolled back whole.
    assert query(
        conninfo,
        "SELECT count(*) FROM pipeline_run r JOIN pipeline_ledger l ON l.id = r.ledger_id "
        "WHERE l.stage = 'daily' AND r.status <> 'done'",
    ) == [(0,)]
    assert_equal_to_a_clean_run(conninfo, stages.drain)


def test_a_warm_shutdown_mid_stage_finishes_the_window_and_hands_it_on(
    dataset, test_db, shared_broker, spawn
):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": shared_broker}
    with held(conninfo, "agg_daily") as blocker:
        worker = spawn(env, "warm")
        worker.wait_ready()
        ingest(dataset, env)
        wait_for(lambda: waiting_stage_backends(conninfo, "daily"), "the daily stage held")
        pool = worker.pool_pids()
        worker.warm_shutdown()
        wait_for(lambda: "Warm shutdown" in worker.log(), "the warm shutdown to begin")
        # No task starts once the shutdown has begun. The daily windows held are
        # read now, once two readings a second apart agree: a window begun just
        # before may still be on its way to the lock.
        backends = wait_for(_steady(lambda: waiting_stage_backends(conninfo, "daily")),
                            "the held daily windows to stay the same")  # fmt: skip
        blocker.rollback()  # the held windows go on, in the worker shutting down
        assert worker.process.wait(timeout=120) == 0, worker.log_tail()

    # Each window held finished once, in the worker that was shutting down.
    runs = query(
        conninfo,
        "SELECT r.worker, r.status FROM pipeline_run r "
        "JOIN pipeline_ledger l ON l.id = r.ledger_id WHERE l.stage = 'daily'",
    )
    finished_there = [w for w, status in runs if status == "done" and int(w.rsplit(":")[1]) in pool]
    assert len(finished_there) == len(backends), (runs, pool)
    # What is left waits in the queues for the next worker: nothing was lost in between.
    assert settled_state(conninfo)["dirty"] > 0
    assert sum(queue_depth(shared_broker, queue) or 0 for queue in WORKER_QUEUES) >= 1
    successor = spawn(env, "successor")
    wait_until_settled(conninfo, worker, successor, live=(successor,))
    successor.stop()
    assert_nothing_failed(conninfo, shared_broker)
    assert_equal_to_a_clean_run(conninfo, stages.drain)


def test_the_same_task_delivered_twice_at_once_is_done_once(dataset, test_db, shared_broker, spawn):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": shared_broker}
    ingest(dataset, db_env | {"METRIFLOW_PIPELINE_TRIGGER": "false"})
    stages.drain(("staged", "page", "interval"))
    december, january = stages.dirty_windows("daily")
    one = spawn(env, "one", concurrency=1)
    two = spawn(env, "two", concurrency=1)
    one.wait_ready()
    two.wait_ready()
    task_id = str(uuid.uuid4())
    with held(conninfo, "agg_daily"):
        # One message published twice (same id, same body): each worker takes one
        # (prefetch 1), the second while the first is mid-stage.
        for _ in range(2):
            app.send_task("pipeline.stage.daily", kwargs={"window_start": december.isoformat()},
                          task_id=task_id)  # fmt: skip
        wait_for(lambda: waiting_stage_backends(conninfo, "daily"), "the first delivery held")
        wait_for(lambda: one.received(task_id) and two.received(task_id),
                 "both workers to receive the task")  # fmt: skip
        app.send_task("pipeline.stage.daily", kwargs={"window_start": january.isoformat()})
    wait_until_settled(conninfo, one, two, live=(one, two))

    # The window's keys were aggregated by one run; the other delivery found it taken.
    assert query(
        conninfo,
        "SELECT count(*) FROM pipeline_run r JOIN pipeline_ledger l ON l.id = r.ledger_id "
        "WHERE l.stage = 'daily' AND l.window_start = %s AND r.rows_in > 0",
        [december],
    ) == [(1,)]
    assert_nothing_failed(conninfo, shared_broker)
    assert_equal_to_a_clean_run(conninfo, stages.drain)


def test_poison_messages_are_dead_lettered_and_the_rest_flows(
    dataset, test_db, shared_broker, spawn
):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": shared_broker}
    worker = spawn(env, "poison")
    worker.wait_ready()
    poison = {
        # A body that is not JSON, under a task the worker knows.
        "undecodable": (b"\x80\x81 not json", {"task": "pipeline.stage.daily"}),
        # A task no worker has.
        "unknown task": (json.dumps([[], {}, {}]).encode(), {"task": "pipeline.stage.nope"}),
        # Not a Celery message at all: no task header.
        "no task header": (b'{"hello": "world"}', {}),
    }
    ids = {}
    with Connection(shared_broker) as conn:
        producer = Producer(conn.channel(), exchange=Exchange(PIPELINE_EXCHANGE.name))
        for what, (body, headers) in poison.items():
            ids[what] = str(uuid.uuid4())
            if headers:
                headers = {**headers, "id": ids[what], "lang": "py", "argsrepr": "",
                           "kwargsrepr": ""}  # fmt: skip
            for queue in ("staged", "daily"):
                producer.publish(body, routing_key=queue, content_type="application/json",
                                 content_encoding="utf-8", headers=headers,
                                 message_id=f"{ids[what]}-{queue}")  # fmt: skip
    ingest(dataset, env)
    wait_until_settled(conninfo, worker, live=(worker,))
    expected = {f"{ids[what]}-{queue}": what for what in poison for queue in ("staged", "daily")}
    with suppress(AssertionError):  # the comparison below says which are missing
        wait_for(lambda: queue_depth(shared_broker, "dead_letter") >= len(expected),
                 "every poison message dead-lettered", timeout=15)  # fmt: skip
    worker.stop()

    letters = take_messages(shared_broker, "dead_letter")
    got = {m.properties.get("message_id") for m in letters}
    assert {f"{expected[i]} on {i.rsplit('-', 1)[1]}" for i in expected if i not in got} == set(), (
        "poison messages not dead-lettered (dropped)"
    )
    assert got == set(expected)
    assert_equal_to_a_clean_run(conninfo, stages.drain)
