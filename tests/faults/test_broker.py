"""Faults of the broker, on a private RabbitMQ node (tests/instances.py): restarted
with tasks queued, the workers' connections cut mid-stage, and a task held past the
consumer timeout. The sweep is never run: what the chain needs must come from its
own messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline import stages

from ..instances import PrivateRabbitMQ
from ..rabbitmq import queue_depth
from .conftest import private_vhost
from .harness import (
    WORKER_QUEUES,
    assert_equal_to_a_clean_run,
    held,
    ingest,
    query,
    wait_for,
    wait_until_settled,
    waiting_stage_backends,
)
from .test_workers import assert_nothing_failed

pytestmark = pytest.mark.slow

CONSUMER_TIMEOUT_MS = 3000


def depths(url: str) -> dict[str, int]:
    return {queue: queue_depth(url, queue) or 0 for queue in WORKER_QUEUES}


def test_the_broker_restarted_with_tasks_queued_loses_nothing(
    dataset, test_db, rabbitmq_node, private_broker, spawn
):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": private_broker}
    # Workers for the first three stages only: the daily windows they hand on queue up.
    upstream = spawn(env, "upstream", queues=("staged", "page", "interval"))
    upstream.wait_ready()
    ingest(dataset, env)
    wait_for(
        lambda: (
            query(conninfo, "SELECT DISTINCT stage FROM pipeline_dirty") == [("daily",)]
            and query(
                conninfo,
                "SELECT count(*) FROM pipeline_ledger WHERE status <> 'done' "
                "AND stage IN ('staged', 'page', 'interval')",
            )
            == [(0,)]
            and depths(private_broker)["daily"] >= 2
        ),
        "daily windows queued",
    )
    upstream.stop()
    before = depths(private_broker)
    assert before["daily"] >= 2, before

    rabbitmq_node.restart()

    # Durable queues, persistent messages: every one is still there.
    assert depths(private_broker) == before
    downstream = spawn(env, "downstream")
    wait_until_settled(conninfo, upstream, downstream, live=(downstream,))
    downstream.stop()
    assert_nothing_failed(conninfo, private_broker)
    assert_equal_to_a_clean_run(conninfo, stages.drain)


def test_the_broker_connection_cut_mid_stage_only_delays_the_result(
    dataset, test_db, rabbitmq_node, private_broker, spawn
):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": private_broker}
    with held(conninfo, "agg_daily"):
        worker = spawn(env, "cut")
        worker.wait_ready()
        ingest(dataset, env)
        wait_for(lambda: waiting_stage_backends(conninfo, "daily"), "the daily stage held")
        assert rabbitmq_node.close_connections("cut by the fault matrix") >= 1
        # The worker connects again and consumes again before the stage is let go.
        worker.wait_ready()
    wait_until_settled(conninfo, worker, live=(worker,))
    worker.stop()
    assert_nothing_failed(conninfo, private_broker)
    assert_equal_to_a_clean_run(conninfo, stages.drain)


@pytest.fixture(scope="module")
def short_timeout_node() -> Iterator[PrivateRabbitMQ]:
    """A node whose consumer timeout is a few seconds, checked every second."""
    advanced = (
        f"[{{rabbit, [{{consumer_timeout, {CONSUMER_TIMEOUT_MS}}}, "
        "{channel_tick_interval, 1000}]}]"
    )
    with PrivateRabbitMQ(advanced=advanced) as node:
        yield node


@pytest.fixture
def short_timeout_broker(short_timeout_node, monkeypatch) -> Iterator[str]:
    yield from private_vhost(short_timeout_node, monkeypatch)


def test_a_task_held_past_the_consumer_timeout_is_done_once_it_can(
    dataset, test_db, short_timeout_node, short_timeout_broker, spawn
):
    conninfo, db_env = test_db
    env = {**db_env, "CELERY_BROKER_URL": short_timeout_broker}
    with held(conninfo, "agg_daily"):
        worker = spawn(env, "slow")
        worker.wait_ready()
        ingest(dataset, env)
        wait_for(lambda: waiting_stage_backends(conninfo, "daily"), "the daily stage held")
        # RabbitMQ closes the channel of a delivery unacknowledged past the timeout.
        wait_for(
            lambda: (
                "timed out" in short_timeout_node.log_tail(200)
                or "PRECONDITION_FAILED" in worker.log()
            ),
            "the consumer timeout to strike",
            timeout=30,
        )
    wait_until_settled(conninfo, worker, live=(worker,))
    worker.stop()
    assert_nothing_failed(conninfo, short_timeout_broker)
    assert_equal_to_a_clean_run(conninfo, stages.drain)
