"""Liveness and readiness of Metriflow (``/api/health/live``, ``/api/health/ready``).

Liveness is the process answering: it touches nothing else. Readiness runs five checks
side by side, each bounded by ``METRIFLOW_HEALTH_TIMEOUT_SECONDS`` and reported with its
own status, so that one service that hangs neither delays the answer past the bound nor
hides the state of the others:

- ``database``: a new PostgreSQL connection answers ``SELECT 1`` (connect and statement
  timeouts);
- ``cache``: Redis answers ``PING`` (socket timeouts);
- ``broker``: a connection to the Celery broker opens (connect timeout);
- ``workers``: every stage queue (``metriflow.celery.STAGES``) is consumed by at least
  one worker that answers Celery's ``active_queues`` broadcast within the timeout; the
  answer is reused for ``METRIFLOW_HEALTH_WORKERS_CACHE_SECONDS``, so that a health poller
  (or many API processes polled at once) does not flood the broker with broadcasts;
- ``lag``: the oldest pending work (``pipeline.selectors.pipeline_lag``: a dirty key, a
  batch waiting to be staged, an unfinished window) is younger than
  ``METRIFLOW_HEALTH_MAX_LAG_SECONDS``.

A check that raises, or has not answered within the bound, fails with its error; the
answer is always a body naming the failing checks, never an exception.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from django.conf import settings

CHECKS = ("database", "cache", "broker", "workers", "lag")
# Past a check's own timeouts, the most its thread is waited for before it is reported
# as not answering (its thread is left to end on its own).
_GRACE_SECONDS = 0.5


@dataclass
class Check:
    ok: bool
    seconds: float = 0.0
    error: str | None = None
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "seconds": round(self.seconds, 6), "error": self.error,
                **self.detail}  # fmt: skip


@dataclass
class Readiness:
    checks: dict[str, Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check.ok]

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "failing": self.failing,
            "checks": {name: check.as_dict() for name, check in self.checks.items()},
        }


def liveness() -> dict:
    """The process answers; nothing else is touched."""
    return {"ok": True, "pid": os.getpid()}


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _timeout() -> float:
    return float(settings.METRIFLOW_HEALTH_TIMEOUT_SECONDS)


# ------------------------------------------------------------------ the checks


def check_database() -> dict:
    _query("SELECT 1")
    return {}


def _connect_database():
    """A connection of its own, bounded by the timeout: the ORM's connection may be
    mid-transaction, and its connect has no bound of its own."""
    import psycopg

    from pipeline.ingest.service import conninfo

    timeout = _timeout()
    return psycopg.connect(
        conninfo(),
        autocommit=True,
        # libpq counts whole seconds, at least 2.
        connect_timeout=max(2, math.ceil(timeout)),
        options=f"-c statement_timeout={max(1, int(timeout * 1000))}",
        application_name="metriflow-health",
    )


def _query(sql: str) -> list[tuple]:
    with _connect_database() as conn:
        return conn.execute(sql).fetchall()


def check_cache() -> dict:
    import redis

    timeout = _timeout()
    client = redis.Redis.from_url(
        settings.CACHES["default"]["LOCATION"],
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry_on_timeout=False,
    )
    try:
        if not client.ping():
            raise ConnectionError("PING was not answered")
    finally:
        client.close()
    return {}


def _broker_connection():
    from metriflow.celery import app

    return app.connection_for_read(connect_timeout=_timeout())


def _connect(conn) -> None:
    """One attempt, no retry: the TCP connect and the AMQP handshake are each bounded by
    the connect timeout."""
    conn.ensure_connection(max_retries=0)


def check_broker() -> dict:
    with _broker_connection() as conn:
        _connect(conn)
        return {"broker": conn.as_uri()}  # the password masked


_workers_lock = threading.Lock()
_workers_probe: tuple[float, dict] | None = None  # (monotonic time, answer)


def forget_workers() -> None:
    """Drops the cached answer of the workers: the next readiness asks them again."""
    global _workers_probe
    with _workers_lock:
        _workers_probe = None


def _probe_workers() -> dict:
    """Which answering worker consumes which stage queue (``active_queues``)."""
    from metriflow.celery import STAGES, app

    timeout = _timeout()
    try:
        with _broker_connection() as conn:
            _connect(conn)
            replies = app.control.inspect(timeout=timeout, connection=conn).active_queues()
    except Exception as exc:
        return {"error": f"broker: {_error(exc)}", "queues": {q: [] for q in STAGES}}
    consumers = {queue: [] for queue in STAGES}
    for worker, queues in (replies or {}).items():
        for queue in queues or ():
            if queue.get("name") in consumers:
                consumers[queue["name"]].append(worker)
    return {"error": None, "queues": {q: sorted(w) for q, w in consumers.items()}}


def check_workers() -> dict:
    """At least one answering worker per stage queue. One broadcast per cache period for
    the whole process: concurrent readiness requests wait for the one in flight."""
    global _workers_probe
    ttl = float(settings.METRIFLOW_HEALTH_WORKERS_CACHE_SECONDS)
    with _workers_lock:
        now = time.monotonic()
        cached = _workers_probe is not None and now - _workers_probe[0] < ttl
        if not cached:
            _workers_probe = (now, _probe_workers())
        asked_at, answer = _workers_probe
    missing = [queue for queue, workers in answer["queues"].items() if not workers]
    detail = {
        "queues": answer["queues"],
        "missing_queues": missing,
        "cached": cached,
        "age_seconds": round(time.monotonic() - asked_at, 3),
    }
    if answer["error"] or missing:
        error = answer["error"] or f"no worker answers for queue(s): {', '.join(missing)}"
        raise CheckFailed(error, detail)
    return detail


def check_lag() -> dict:
    """Age of the oldest pending work per stage; fails past the threshold."""
    from pipeline.selectors import pipeline_lag

    limit = float(settings.METRIFLOW_HEALTH_MAX_LAG_SECONDS)
    with _connect_database() as conn, conn.cursor() as cursor:
        lag = pipeline_lag(cursor)
    oldest = {stage: round(age, 3) for stage, age in lag.stages.items()}
    detail = {"lag_seconds": round(lag.seconds, 3), "max_lag_seconds": limit,
              "oldest_seconds": oldest}  # fmt: skip
    if lag.seconds > limit:
        raise CheckFailed(
            f"pipeline lag {lag.seconds:.0f} s above {limit:.0f} s "
            f"(oldest pending work: {lag.behind})",
            detail,
        )
    return detail


class CheckFailed(Exception):
    """A check that ran and found a fault: its message and what it measured."""

    def __init__(self, message: str, detail: dict) -> None:
        super().__init__(message)
        self.detail = detail


_RUNNERS: dict[str, Callable[[], dict]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "workers": check_workers,
    "lag": check_lag,
}


def _run(check: Callable[[], dict]) -> Check:
    started = time.perf_counter()
    try:
        detail = check()
    except CheckFailed as exc:
        return Check(False, time.perf_counter() - started, str(exc), exc.detail)
    except Exception as exc:
        return Check(False, time.perf_counter() - started, _error(exc))
    return Check(True, time.perf_counter() - started, None, detail)


def readiness() -> Readiness:
    """Every check, side by side, each within its bound."""
    bound = _timeout() * 2 + _GRACE_SECONDS  # the workers' probe: connect, then gather
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="health")
    try:
        futures = {name: pool.submit(_run, _RUNNERS[name]) for name in CHECKS}
        deadline = time.monotonic() + bound
        checks = {}
        for name, future in futures.items():
            try:
                checks[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                checks[name] = Check(False, bound, f"no answer within {bound:g} s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return Readiness(checks)
