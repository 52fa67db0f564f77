"""RabbitMQ for tests: a fresh vhost of a test's own, and reads of its queues.

A vhost is created through the management HTTP API (guest gets every
permission on it) and deleted afterwards with everything in it, so a test
declares and relies on nothing that another test or a developer's worker
shares.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from amqp.exceptions import ChannelError
from django.conf import settings
from kombu import Connection
from kombu.utils.url import url_to_parts

from metriflow.celery import app

MANAGEMENT_PORT = int(os.environ.get("RABBITMQ_MANAGEMENT_PORT", "15672"))


def _broker_parts():
    _transport, host, port, user, password, _path, _query = url_to_parts(settings.CELERY_BROKER_URL)
    return host or "127.0.0.1", port or 5672, user or "guest", password or "guest"


def _management(method: str, path: str, body: dict | None = None) -> None:
    host, _port, user, password = _broker_parts()
    request = urllib.request.Request(
        f"http://{host}:{MANAGEMENT_PORT}/api/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "content-type": "application/json",
            "authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201, 204), (method, path, response.status)


@contextmanager
def fresh_vhost() -> Iterator[str]:
    """A new, empty vhost; yields its broker URL and deletes the vhost afterwards."""
    name = f"mf-test-{uuid.uuid4().hex[:12]}"
    quoted = urllib.parse.quote(name, safe="")
    host, port, user, password = _broker_parts()
    _management("PUT", f"vhosts/{quoted}", {})
    try:
        _management(
            "PUT",
            f"permissions/{quoted}/{urllib.parse.quote(user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        yield f"amqp://{user}:{password}@{host}:{port}/{quoted}"
    finally:
        _management("DELETE", f"vhosts/{quoted}")


@contextmanager
def app_broker(url: str, monkeypatch) -> Iterator[None]:
    """Points this process's Celery app (its connection and producer pools) at ``url``.

    Celery reads ``CELERY_BROKER_URL`` from the environment before its settings,
    so the variable is what changes; the pools bound to the old URL are dropped.
    """

    def reset() -> None:
        app.close()  # the connection pool
        app.__dict__.pop("amqp", None)  # and the producer pool made from it

    reset()
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    try:
        yield
    finally:
        reset()
        monkeypatch.undo()
        reset()


@contextmanager
def stage_broker(monkeypatch) -> Iterator[str]:
    """A vhost of the test's own with the stage queues declared, this process's Celery
    app pointed at it; yields its URL."""
    with fresh_vhost() as url, app_broker(url, monkeypatch):
        with Connection(url) as conn:
            channel = conn.channel()
            for queue in app.conf.task_queues:
                queue.bind(channel).declare()
            channel.close()
        yield url


def queue_state(url: str, queue: str) -> tuple[int, int] | None:
    """(messages ready, consumers) of ``queue``, or None when it does not exist."""
    with Connection(url) as conn:
        channel = conn.channel()
        try:
            _name, messages, consumer_count = channel.queue_declare(queue, passive=True)
        except ChannelError as exc:
            if getattr(exc, "code", None) == 404:  # NOT_FOUND closed the channel
                return None
            raise
        channel.close()
        return messages, consumer_count


def queue_depth(url: str, queue: str) -> int | None:
    """Messages ready in ``queue``, or None when the queue does not exist."""
    state = queue_state(url, queue)
    return None if state is None else state[0]


def take_messages(url: str, queue: str) -> list:
    """Every message of ``queue``, consumed (acknowledged), in queue order."""
    messages = []
    with Connection(url) as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
        channel.close()
    return messages
