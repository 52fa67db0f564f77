"""Liveness and readiness against the real services, in a RabbitMQ vhost of the test's own:
no worker, then real workers on part and then all of the stage queues; an old dirty mark;
a broker that refuses or never answers; Redis unreachable. Readiness is always a JSON
answer naming the failing checks (503), never an error page; liveness answers throughout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rest_framework.test import APIClient

from metriflow.celery import STAGES
from observability import health

from .conftest import REPO_ROOT
from .processes import free_port, stop
from .rabbitmq import app_broker, fresh_vhost, queue_state
from .test_dead_letters import wait_for
from .test_stages import query

pytestmark = pytest.mark.usefixtures("pipeline_db")

CHECKS = ["database", "cache", "broker", "workers", "lag"]
FIRST, REST = list(STAGES[:3]), list(STAGES[3:])  # raw, staged, page | interval ... yearly


@pytest.fixture(autouse=True)
def fresh_probe(settings):
    """Every test asks the workers afresh, with a short bound on each check."""
    settings.METRIFLOW_HEALTH_TIMEOUT_SECONDS = 1.0
    health.forget_workers()
    yield
    health.forget_workers()


def ready() -> tuple[int, dict]:
    response = APIClient().get("/api/health/ready")
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body["checks"]) == set(CHECKS)
    assert body["failing"] == [name for name in CHECKS if not body["checks"][name]["ok"]]
    assert body["ok"] is (response.status_code == 200) is (body["failing"] == [])
    assert response.status_code in (200, 503)
    return response.status_code, body


def assert_alive() -> None:
    response = APIClient().get("/api/health/live")
    assert response.status_code == 200 and response.json() == {"ok": True, "pid": os.getpid()}


def start_worker(env: dict, queues: list[str], name: str, log_path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", ",".join(queues),
         "-n", f"{name}@%h", "--concurrency", "1", "--without-mingle", "--without-gossip"],
        cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def consumed(url: str, queues: list[str]) -> bool:
    return all((queue_state(url, queue) or (0, 0))[1] >= 1 for queue in queues)


def workers_answer(expected: dict[str, list[str]]):
    """A condition: readiness (asked afresh) maps the queues to these workers."""

    def condition() -> bool:
        health.forget_workers()
        return ready()[1]["checks"]["workers"].get("queues") == expected

    return condition


def test_readiness_needs_an_answering_worker_on_every_stage_queue(
    tmp_path, test_database_env, monkeypatch, settings
):
    settings.METRIFLOW_HEALTH_WORKERS_CACHE_SECONDS = 3600
    host = socket.gethostname()
    first, rest = f"health-first-{os.getpid()}@{host}", f"health-rest-{os.getpid()}@{host}"
    with fresh_vhost() as url, app_broker(url, monkeypatch):
        code, body = ready()
        assert (code, body["failing"]) == (503, ["workers"])
        workers = body["checks"]["workers"]
        assert workers["missing_queues"] == list(STAGES)
        assert workers["queues"] == {queue: [] for queue in STAGES}
        assert workers["cached"] is False
        assert workers["error"] == f"no worker answers for queue(s): {', '.join(STAGES)}"
        assert_alive()

        env = {**test_database_env, "CELERY_BROKER_URL": url}
        processes = [
            start_worker(env, FIRST, first.split("@")[0], tmp_path / "first.log"),
            start_worker(env, REST, rest.split("@")[0], tmp_path / "rest.log"),
        ]
        try:
            wait_for(lambda: consumed(url, list(STAGES)), "workers on every queue")
            # Within the cache period the answer is reused: no broadcast reached them.
            code, body = ready()
            assert code == 503 and body["checks"]["workers"]["cached"] is True
            assert body["checks"]["workers"]["missing_queues"] == list(STAGES)

            expected = {queue: [first] for queue in FIRST} | {queue: [rest] for queue in REST}
            wait_for(workers_answer(expected), "both workers to answer")
            code, body = ready()
            assert (code, body["ok"], body["failing"]) == (200, True, [])
            assert body["checks"]["workers"]["missing_queues"] == []
            assert body["checks"]["workers"]["cached"] is True  # the answer just asked
            assert_alive()

            # One worker gone: its queues are named.
            stop(processes.pop())
            wait_for(workers_answer({q: [first] for q in FIRST} | {q: [] for q in REST}),
                     "the other worker alone")  # fmt: skip
            code, body = ready()
            assert (code, body["failing"]) == (503, ["workers"])
            assert body["checks"]["workers"]["missing_queues"] == REST
            assert body["checks"]["workers"]["error"] == (
                f"no worker answers for queue(s): {', '.join(REST)}"
            )
            assert_alive()
        finally:
            for process in processes:
                stop(process)


def dirty_ages() -> dict[str, float]:
    """The age of each stage's oldest dirty mark, by PostgreSQL's clock."""
    return dict(query(
        "SELECT stage, extract(epoch FROM now() - min(marked_at))::float8 "
        "FROM pipeline_dirty GROUP BY stage"
    ))  # fmt: skip


def test_an_old_dirty_mark_fails_the_lag_check_with_its_age(settings):
    settings.METRIFLOW_HEALTH_MAX_LAG_SECONDS = 3600
    query(
        "INSERT INTO pipeline_dirty (stage, period_start, page_id, marked_at) VALUES "
        "('daily', '2024-03-01', 1, now() - interval '2 hours'), "
        "('daily', '2024-03-02', 1, now() - interval '10 minutes'), "
        "('monthly', '2024-03-01', 1, now() - interval '30 minutes')"
    )
    before = dirty_ages()
    _code, body = ready()
    after = dirty_ages()
    lag = body["checks"]["lag"]
    assert not lag["ok"] and "lag" in body["failing"]
    assert set(lag["oldest_seconds"]) == {"daily", "monthly"}
    for stage, age in lag["oldest_seconds"].items():
        assert before[stage] - 0.001 <= age <= after[stage] + 0.001, (stage, age)
    assert lag["lag_seconds"] == lag["oldest_seconds"]["daily"] >= 7200
    assert lag["max_lag_seconds"] == 3600
    assert lag["error"] == (
        f"pipeline lag {lag['lag_seconds']:.0f} s above 3600 s (oldest pending work: daily)"
    )
    assert_alive()

    # Under the threshold the same backlog passes.
    settings.METRIFLOW_HEALTH_MAX_LAG_SECONDS = 3 * 3600
    _code, body = ready()
    assert body["checks"]["lag"]["ok"] and "lag" not in body["failing"]


def test_a_batch_waiting_to_be_staged_counts_as_lag(settings):
    settings.METRIFLOW_HEALTH_MAX_LAG_SECONDS = 60
    [(batch_id,)] = query(
        "INSERT INTO ingest_batch (source, file_name, file_layout, checksum, status, "
        "started_at) VALUES ('ga', 'ga.json', 'array', 'c0ffee', 'loaded', now()) RETURNING id"
    )
    query(
        "INSERT INTO pipeline_ledger (stage, batch_id, created_at) "
        "VALUES ('staged', %s, now() - interval '5 minutes')",
        [batch_id],
    )
    _code, body = ready()
    lag = body["checks"]["lag"]
    assert not lag["ok"] and set(lag["oldest_seconds"]) == {"staged"}
    assert lag["lag_seconds"] >= 300
    assert lag["error"].endswith("(oldest pending work: staged)")
    query("UPDATE pipeline_ledger SET status = 'done'")
    _code, body = ready()
    assert body["checks"]["lag"]["ok"] and body["checks"]["lag"]["oldest_seconds"] == {}


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_a_broker_that_refuses_or_never_answers_fails_its_checks_in_json(monkeypatch):
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    with app_broker(closed, monkeypatch):
        code, body = ready()
        assert code == 503 and body["failing"] == ["broker", "workers"]
        broker = body["checks"]["broker"]
        assert "Connection refused" in broker["error"] or "ECONNREFUSED" in broker["error"]
        assert body["checks"]["workers"]["error"].startswith("broker: ")
        assert body["checks"]["workers"]["missing_queues"] == list(STAGES)
        assert_alive()

    health.forget_workers()
    with silent_listener() as port, app_broker(f"amqp://guest:guest@127.0.0.1:{port}//",
                                               monkeypatch):  # fmt: skip
        code, body = ready()
        assert code == 503 and body["failing"] == ["broker", "workers"]
        # Bounded: the handshake that never comes is given up with a timeout.
        assert "timed out" in body["checks"]["broker"]["error"].lower(), body["checks"]
        assert_alive()


def test_redis_unreachable_fails_the_cache_check(settings):
    caches = settings.CACHES
    settings.CACHES = {
        **caches,
        "default": {**caches["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"},
    }
    code, body = ready()
    assert code == 503 and "cache" in body["failing"]
    assert body["checks"]["cache"]["error"].startswith("ConnectionError: ")
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert_alive()
    # The health check of the API and its services says the same.
    old = APIClient().get("/api/health")
    assert old.status_code == 503 and old.json() == {
        "ok": False, "services": {"postgres": True, "redis": False}
    }  # fmt: skip

    with silent_listener() as port:
        settings.CACHES = {
            **caches, "default": {**caches["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"}
        }  # fmt: skip
        code, body = ready()
        assert code == 503 and "cache" in body["failing"]
        assert body["checks"]["cache"]["error"].startswith("TimeoutError: ")
