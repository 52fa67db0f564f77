"""Fixtures of the fault matrix: the data set, workers stopped whatever happens, and
private RabbitMQ nodes (tests/instances.py) for the faults that break the broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import connection

from ..conftest import admin_conninfo
from ..instances import PrivateRabbitMQ
from ..rabbitmq import app_broker, fresh_vhost
from .harness import Worker, make_dataset


@pytest.fixture
def dataset(tmp_path) -> list:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def test_db(pipeline_db, test_database_env) -> tuple[str, dict[str, str]]:
    """The test database (pipeline tables empty): its conninfo and the environment
    that points a subprocess at it."""
    return admin_conninfo(connection.settings_dict["NAME"]), test_database_env


@pytest.fixture
def spawn(tmp_path) -> Iterator:
    """``spawn(env, name, queues=..., concurrency=...)`` starts a worker; every worker
    started is stopped at the end."""
    started: list[Worker] = []

    def start(env: dict[str, str], name: str, **kwargs) -> Worker:
        worker = Worker(env, tmp_path, name, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def shared_broker(monkeypatch) -> Iterator[str]:
    """A fresh vhost on the machine's RabbitMQ (for faults that leave the broker be);
    this process's Celery app publishes there too."""
    with fresh_vhost() as url, app_broker(url, monkeypatch):
        yield url


def private_vhost(node: PrivateRabbitMQ, monkeypatch) -> Iterator[str]:
    name = f"faults-{uuid.uuid4().hex[:8]}"
    node.rabbitmqctl("add_vhost", name)
    node.rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    url = node.url(name)
    with app_broker(url, monkeypatch):
        yield url
    if node.process is not None:
        node.rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="module")
def rabbitmq_node() -> Iterator[PrivateRabbitMQ]:
    with PrivateRabbitMQ() as node:
        yield node


@pytest.fixture
def private_broker(rabbitmq_node, monkeypatch) -> Iterator[str]:
    """A fresh vhost on a private RabbitMQ node that the test may restart or cut."""
    yield from private_vhost(rabbitmq_node, monkeypatch)
