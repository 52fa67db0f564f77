"""Redis flushed, then stopped, under the API served by gunicorn: reports still
answer, from PostgreSQL, exactly what they answered with Redis up, and never 500.
The API's Redis is a private server (tests/instances.py) that the test stops."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from pipeline import stages
from pipeline.ingest import ingest_files

from ..conftest import run_manage
from ..factories import PASSWORD, UserFactory
from ..instances import PrivateRedis
from ..processes import free_port, gunicorn
from .harness import assert_equal_to_a_clean_run

pytestmark = pytest.mark.slow

REPORTS = (
    "/api/reports/summary?from=2024-12-01&to=2025-02-01",
    # Not whole days: composed from hours, days and a month, and cached as such.
    "/api/reports/summary?from=2024-12-30T15:00:00Z&to=2025-01-01T09:00:00Z",
    "/api/reports/timeseries?granularity=day&from=2024-12-29&to=2025-01-03",
    "/api/reports/timeseries?granularity=month&from=2024-01-01&to=2026-01-01",
    "/api/reports/pages?from=2024-12-01&to=2025-02-01&order_by=-views&limit=5",
)


def fetch(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:500]


def answers(base: str, token: str) -> tuple[dict, float]:
    """Each report's (status, body), and the seconds all of them took."""
    began = time.perf_counter()
    out = {path: fetch(base + path, token) for path in REPORTS}
    return out, time.perf_counter() - began


def test_reports_answer_from_postgresql_with_redis_flushed_then_stopped(dataset, test_db, tmp_path):
    _conninfo, db_env = test_db
    ingest_files([str(p) for p in dataset], parallel=1, show_progress=False)
    assert stages.failed_runs(stages.drain()) == []
    user = UserFactory(is_staff=True)  # staff read every site
    with PrivateRedis() as redis:
        env = {**db_env, "REDIS_URL": redis.url(), "CACHE_KEY_PREFIX": f"faults-{uuid.uuid4().hex}",
               "METRIFLOW_RATE_REPORTS": "100000/h"}  # fmt: skip
        log_path = tmp_path / "gunicorn.log"
        with open(log_path, "wb") as log, gunicorn(env, log=log) as base:
            credentials = {"username": user.username, "password": PASSWORD}
            status, pair = fetch(f"{base}/api/auth/token", body=credentials)
            assert status == 200, pair
            token = pair["access"]

            computed, computed_s = answers(base, token)
            assert {status for status, _ in computed.values()} == {200}, computed
            cached, cached_s = answers(base, token)
            assert cached == computed
            assert redis.dbsize() > 0  # the answers and the ranges are in Redis

            redis.flushall()
            flushed, flushed_s = answers(base, token)
            assert flushed == computed

            redis.stop()
            down, down_s = answers(base, token)
            assert {path: status for path, (status, _) in down.items()} == dict.fromkeys(
                REPORTS, 200
            ), (down, log_path.read_text(errors="replace")[-3000:])
            assert down == computed
            # A password is not tried without its rate limit: login fails closed.
            status, refused = fetch(f"{base}/api/auth/token", body=credentials)
            assert status == 503, refused
    print(
        f"{len(REPORTS)} reports: computed {computed_s * 1000:.0f} ms, cached "
        f"{cached_s * 1000:.0f} ms, Redis flushed {flushed_s * 1000:.0f} ms, Redis stopped "
        f"{down_s * 1000:.0f} ms (Redis start {redis.start_seconds[0]:.2f} s)"
    )


def test_the_pipeline_runs_with_redis_unreachable(dataset, test_db):
    """Ingestion and every stage commit their work with Redis gone (the data version
    is not bumped, a warning says so), and the tables equal a clean run."""
    conninfo, db_env = test_db
    env = {**db_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "CACHE_KEY_PREFIX": f"faults-{uuid.uuid4().hex}", "LOG_LEVEL": "WARNING"}  # fmt: skip
    ingested = run_manage("ingest", "--no-progress", *map(str, dataset), env=env, check=False)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    ran = run_manage("pipeline", "run", env=env, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Traceback" not in ingested.stderr + ran.stderr
    assert "data version not bumped, Redis unreachable" in ingested.stderr + ran.stderr
    assert_equal_to_a_clean_run(conninfo, lambda: stages.drain())
