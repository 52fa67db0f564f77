"""Flower as shipped (metriflow/flowerconfig.py): behind basic auth, and showing
the depth of every stage queue through RabbitMQ's management API."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from kombu import Connection, Producer

from metriflow.celery import app

from .conftest import REPO_ROOT
from .processes import free_port, stop
from .rabbitmq import fresh_vhost

AUTH = "ops:a-long-flower-secret"


def _get(url: str, auth: str | None = None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def start_flower(broker_url: str, port: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "flower",
         "--conf=metriflow/flowerconfig.py"],
        cwd=REPO_ROOT,
        env={**os.environ, "CELERY_BROKER_URL": broker_url, "FLOWER_PORT": str(port), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop_flower(process: subprocess.Popen) -> str:
    """Stops Flower; what it printed."""
    stop(process, timeout=20)
    return process.stdout.read() if process.stdout else ""


@pytest.fixture
def vhost_with_queued_tasks():
    """A fresh vhost with the stage queues declared and three tasks waiting on daily."""
    with fresh_vhost() as url, Connection(url) as conn:
        channel = conn.channel()
        for queue in app.conf.task_queues:
            queue.bind(channel).declare()
        producer = Producer(channel)
        for n in range(3):
            producer.publish({"n": n}, exchange="metriflow", routing_key="daily", serializer="json")
        yield url


def test_flower_asks_for_credentials_and_shows_queue_depths(vhost_with_queued_tasks):
    port = free_port()
    flower = start_flower(vhost_with_queued_tasks, port, FLOWER_BASIC_AUTH=AUTH)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/healthcheck")
                break
            except OSError:
                if flower.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"flower did not start:\n{stop_flower(flower)[-3000:]}")
                time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(f"{base}/")
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            _get(f"{base}/api/queues/length", auth="ops:wrong")
        vhost = vhost_with_queued_tasks.rsplit("/", 1)[-1]
        depths = {}
        deadline = time.monotonic() + 30  # the management API's counts lag by a few seconds
        while time.monotonic() < deadline:
            status, body = _get(f"{base}/api/queues/length", auth=AUTH)
            assert status == 200
            depths = {
                q["name"]: q.get("messages")
                for q in json.loads(body)["active_queues"]
                if q.get("vhost", vhost) == vhost
            }
            if depths.get("daily") == 3:
                break
            time.sleep(1)
        assert depths.get("daily") == 3, depths
        assert depths.get("staged") == 0, depths
        status, page = _get(f"{base}/broker", auth=AUTH)
        assert b"No queue data" not in page and b"daily" in page
    finally:
        stop_flower(flower)


def test_flower_refuses_to_start_without_credentials_when_debug_is_off(vhost_with_queued_tasks):
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "metriflow", "flower",
         "--conf=metriflow/flowerconfig.py"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={**env, "CELERY_BROKER_URL": vhost_with_queued_tasks, "DJANGO_DEBUG": "false",
             "FLOWER_PORT": str(free_port())},
    )  # fmt: skip
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stdout + result.stderr
