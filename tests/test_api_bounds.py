"""The reporting API bounds its own work: limits checked before any work, bounds inside
the supported range, a statement timeout on every report, and a per-user bound on the
reports running at once that leaves other users and the health check alone."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from reporting import selectors, services
from reporting.selectors import GRANULARITY_LEVEL, bucket_starts
from reporting.serializers import bucket_count

from .conftest import admin_conninfo
from .factories import StaffFactory
from .processes import gunicorn

REPORT_TABLES = (
    "page_hour",
    "agg_interval",
    "agg_daily",
    "agg_monthly",
    "agg_yearly",
    "agg_site_daily",
)


@pytest.fixture
def user(db):
    return StaffFactory()  # staff read every site: no membership needed


@pytest.fixture
def api(user, settings):
    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def redis():
    return services._redis()


# ------------------------------------------------------------------ bucket count


def test_bucket_count_equals_the_listed_buckets():
    """The computed count against the buckets listed one by one, over random ranges of
    every granularity (cut and whole first and last buckets, leap years, month ends)."""
    rng = random.Random(20250101)
    base = datetime(2023, 1, 1, tzinfo=UTC)
    for granularity in GRANULARITY_LEVEL:
        for _ in range(300):
            start = base + timedelta(hours=rng.randrange(0, 3 * 366 * 24))
            span = rng.choice([1, 5, 24, 24 * 31, 24 * 400, 24 * 1000])
            end = start + timedelta(hours=rng.randrange(1, span + 1))
            listed = len(bucket_starts(granularity, start, end))
            assert bucket_count(granularity, start, end) == listed, (granularity, start, end)
        year = datetime(2024, 1, 1, tzinfo=UTC)  # whole units: no bucket past the end
        assert bucket_count(granularity, year, year.replace(year=2026)) == len(
            bucket_starts(granularity, year, year.replace(year=2026))
        )


@contextlib.contextmanager
def _listing_forbidden():
    """Any listing of buckets inside fails the test: the count must be arithmetic."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("buckets were listed")

    original = selectors.bucket_starts
    selectors.bucket_starts = refuse
    try:
        yield
    finally:
        selectors.bucket_starts = original


def test_bucket_count_is_computed_not_counted():
    start, end = datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    with _listing_forbidden():
        hours = bucket_count("hour", start, end)
    assert hours == (end - start) // timedelta(hours=1)


@pytest.mark.parametrize("granularity", ["hour", "interval", "day"])
@pytest.mark.parametrize("compare", [None, "previous_period", "previous_year"])
def test_the_widest_series_is_refused_at_once(api, granularity, compare):
    query = f"granularity={granularity}&from=1990-01-01&to=2100-01-01"
    if compare:
        query += f"&compare={compare}"
    with _listing_forbidden():  # refused by arithmetic, before any bucket is listed
        response = api.get(f"/api/reports/timeseries?{query}")
    assert response.status_code == 400, response.content
    cap = django_settings.METRIFLOW_MAX_BUCKETS
    assert f"more than {cap} buckets" in response.json()["granularity"][0]


def test_the_bucket_limit_counts_the_compared_range(api, settings):
    settings.METRIFLOW_MAX_BUCKETS = 48
    day = "granularity=hour&from=2025-01-01&to=2025-01-02"
    assert api.get(f"/api/reports/timeseries?{day}").status_code == 200
    assert api.get(f"/api/reports/timeseries?{day}&compare=previous_period").status_code == 200
    settings.METRIFLOW_MAX_BUCKETS = 47
    compared = api.get(f"/api/reports/timeseries?{day}&compare=previous_period")
    assert compared.status_code == 400 and "(48)" in compared.json()["granularity"][0]


# ------------------------------------------------------------------ supported range


OUTSIDE = [
    ("from=0001-01-01T00:00+01:00&to=2025-01-01", "from"),  # offset before year 1
    ("from=0001-01-01&to=2025-01-01", "from"),
    ("from=2025-01-01&to=9999-12-31", "to"),
    ("from=2025-01-01&to=9999-12-31T23:00-01:00", "to"),  # offset past year 9999
    ("from=9999-12-31T23:00:00+01:00&to=9999-12-31T23:00:00-01:00", "from"),
    ("from=1989-12-31T23:00:00Z&to=2025-01-01", "from"),
    ("from=1990-01-01T00:00+01:00&to=2025-01-01", "from"),  # 1989-12-31T23:00Z
    ("from=2025-01-01&to=2100-01-01T00:00-01:00", "to"),  # 2100-01-01T01:00Z
    ("from=2100-01-01T01:00Z&to=2100-01-01T02:00Z", "from"),
]
ENDPOINTS = ["summary", "timeseries", "pages"]
# The ingested instants' range, [1990-01-01, 2100-01-01) by default: a bound may be its end.
MESSAGE = "must be between 1990-01-01 00:00 and 2100-01-01 00:00 UTC"


def plus(query: str) -> str:
    """A query string with the ``+`` of an offset escaped (a bare one is a space)."""
    return query.replace("+", "%2B")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("query", "field"), OUTSIDE)
def test_bounds_outside_the_supported_range_are_400(api, endpoint, query, field):
    extra = "&granularity=year" if endpoint == "timeseries" else ""
    response = api.get(f"/api/reports/{endpoint}?{plus(query)}{extra}")
    assert response.status_code == 400, response.content
    assert MESSAGE in response.json()[field][0]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "query",
    [
        "from=1990-01-01&to=2100-01-01",
        "from=1990-01-01T01:00+01:00&to=2100-01-01T00:00Z",  # 1990-01-01T00:00Z
        "from=2099-12-31T23:00-01:00&to=2100-01-01",  # 2100-01-01T00:00Z: empty range
    ],
)
def test_the_edges_themselves_are_answered(api, endpoint, query):
    extra = "&granularity=year" if endpoint == "timeseries" else ""
    response = api.get(f"/api/reports/{endpoint}?{plus(query)}{extra}")
    if "2099" in query:  # from == to after conversion: a range error, not a bound error
        assert response.status_code == 400 and response.json()["to"] == ["must be after from"]
    else:
        assert response.status_code == 200, response.content


def test_the_supported_range_is_a_setting(api, settings):
    settings.METRIFLOW_INGEST_TIME_FROM = "2020-01-01"
    settings.METRIFLOW_INGEST_TIME_UNTIL = "2030-01-01"
    inside = api.get("/api/reports/summary?from=2020-01-01&to=2030-01-01")
    assert inside.status_code == 200
    before = api.get("/api/reports/summary?from=2019-12-31T23:00Z&to=2021-01-01")
    assert before.status_code == 400
    assert before.json()["from"] == ["must be between 2020-01-01 00:00 and 2030-01-01 00:00 UTC"]


# ------------------------------------------------------------------ statement timeout


@contextlib.contextmanager
def report_tables_locked(release_after: float = 5):
    """Another connection holds every report table in ACCESS EXCLUSIVE mode: a report's
    read waits for it, really, until the lock is released (after ``release_after``
    seconds whatever happens: without a timeout a report then answers 200)."""
    holder = psycopg.connect(admin_conninfo(connection.settings_dict["NAME"]))
    holder.execute(f"LOCK TABLE {', '.join(REPORT_TABLES)} IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(release_after, holder.rollback)
    release.start()
    try:
        yield
    finally:
        release.cancel()
        release.join()
        holder.rollback()
        holder.close()


def test_a_report_past_the_statement_timeout_is_503(settings, transactional_db):
    settings.METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS = 300
    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    client = APIClient()
    client.force_authenticate(StaffFactory())
    with report_tables_locked():
        began = time.perf_counter()
        response = client.get("/api/reports/summary?from=2025-01-01&to=2025-01-08")
        took = time.perf_counter() - began
        # The CSV form answers the same JSON error.
        csv = client.get("/api/reports/summary?from=2025-01-01&to=2025-01-08&format=csv")
    print(f"\nreport blocked by a lock: {response.status_code} after {took * 1000:.0f} ms")
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert "longer than 0.3 s" in response.json()["detail"]
    assert took >= 0.3  # it waited for the timeout, then answered
    assert csv.status_code == 503 and "longer than" in csv.json()["detail"]
    # The timeout was local to the report's transaction: the connection keeps its own.
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)


def test_a_report_runs_under_the_statement_timeout(settings, transactional_db):
    """A report's statements see the timeout (the budget wraps the whole computation)."""
    settings.METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS = 1234
    seen = []
    with services.report_budget("user:probe"), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        seen.append(cursor.fetchone()[0])
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        seen.append(cursor.fetchone()[0])
    assert seen == ["1234ms", "0"]


# ------------------------------------------------------------------ running reports per user


SUMMARY = "/api/reports/summary?from=2025-01-01&to=2025-01-02"


def test_a_user_with_every_slot_held_gets_429_and_others_do_not(api, user, redis, settings):
    settings.METRIFLOW_REPORT_CONCURRENCY = 2
    owner = f"user:{user.pk}"
    key = services.slots_key(owner)
    with services.report_slot(owner), services.report_slot(owner):  # two running reports
        assert redis.zcard(key) == 2
        busy = api.get(SUMMARY)
        assert busy.status_code == 429, busy.content
        assert 1 <= int(busy["Retry-After"]) <= 10
        assert "2 reports of yours are running, at most 2 at once" in busy.json()["detail"]
        other = APIClient()
        other.force_authenticate(StaffFactory())
        assert other.get(SUMMARY).status_code == 200  # another user is not starved
        health = APIClient().get("/api/health")
        assert health.status_code == 200 and health.json()["ok"] is True
    assert redis.zcard(key) == 0  # released
    assert api.get(SUMMARY).status_code == 200
    assert redis.zcard(key) == 0  # the request released its own slot


def test_one_slot_free_lets_a_report_run(api, user, settings):
    settings.METRIFLOW_REPORT_CONCURRENCY = 2
    with services.report_slot(f"user:{user.pk}"):
        assert api.get(SUMMARY).status_code == 200


def test_a_slot_of_a_process_that_died_expires(api, user, redis, settings):
    settings.METRIFLOW_REPORT_CONCURRENCY = 1
    key = services.slots_key(f"user:{user.pk}")
    redis.zadd(key, {"dead-process": time.time() - 1})  # expired a second ago
    assert api.get(SUMMARY).status_code == 200
    redis.zadd(key, {"live-process": time.time() + 30})
    busy = api.get(SUMMARY)
    assert busy.status_code == 429 and 1 <= int(busy["Retry-After"]) <= 10
    redis.delete(key)


# ------------------------------------------------------------------ a real server


def _get(url: str, access: str | None = None) -> tuple[int, float, dict]:
    headers = {"Authorization": f"Bearer {access}"} if access else {}
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, time.perf_counter() - began, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, time.perf_counter() - began, dict(exc.headers)


@pytest.mark.slow
def test_one_users_slow_reports_leave_health_and_others_alone(transactional_db, test_database_env):
    """gunicorn with four workers; a user asks for three reports at once, each stuck
    on a locked table: two run (until the statement timeout: 503), the third is refused
    at once (429), and the health check and another user answer meanwhile."""
    alice, bob = StaffFactory(), StaffFactory()
    env = {**test_database_env, "CACHE_KEY_PREFIX": f"gunicorn-{uuid.uuid4().hex}",
           "METRIFLOW_REPORT_CONCURRENCY": "2",
           "METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS": "2500"}  # fmt: skip
    with gunicorn(env, workers=4) as url:
        access = {user: str(AccessToken.for_user(user)) for user in (alice, bob)}
        report = f"{url}/api/reports/summary?from=2025-01-01&to=2025-01-08"
        with report_tables_locked(), ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(_get, report, access[alice]) for _ in range(2)]
            time.sleep(0.5)  # both are waiting on the lock now
            third = _get(report, access[alice])
            health = _get(f"{url}/api/health")
            # Both answered while the two slow reports were still waiting on the lock.
            answered_meanwhile = not any(future.done() for future in slow)
            other = _get(report, access[bob])
            answers = [future.result() for future in slow]
    print(f"\nthird: {third[:2]}, health: {health[:2]}, bob: {other[:2]}, "
          f"slow: {[a[:2] for a in answers]}")  # fmt: skip
    assert third[0] == 429 and int(third[2]["Retry-After"]) >= 1
    assert health[0] == 200
    assert answered_meanwhile
    assert other[0] == 503  # bob's own report waits on the lock too, in a slot of his
    assert sorted(a[0] for a in answers) == [503, 503]
    assert all(a[1] >= 2.5 for a in answers)  # each ran until its statement timeout
