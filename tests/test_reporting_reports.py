"""Reports against a recomputation from the page-hour rows, for random ranges."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from pipeline import stages
from pipeline.ingest import ingest_files
from reporting.metrics import STRATEGIES, THRESHOLDS, TRAFFIC, VITALS

from .conftest import run_manage
from .contract import generate

pytestmark = pytest.mark.usefixtures("pipeline_db")
START = datetime(2024, 12, 20, tzinfo=UTC)  # data over a month and a year boundary


@pytest.fixture
def dataset(tmp_path):
    generate(tmp_path, "--records", "6000", "--pages", "12", "--sites", "3",
             "--start", START.isoformat(), "--late", "0.05")  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()
    return tmp_path


@pytest.fixture
def api(settings):
    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    # Staff read every site (tests/test_access.py covers members' scoping).
    user = get_user_model().objects.create_user("reader", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def page_hour_rows(start, end, where="", params=()) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT h.*, p.path FROM page_hour h JOIN page p ON p.id = h.page_id "
            f"WHERE h.hour >= %s AND h.hour < %s {where}",
            [start, end, *params],
        )
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def nearest_rank(values, p):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1] if ordered else None


def recompute(rows: list[dict]) -> dict:
    """The contract's metrics straight from page-hour rows."""
    traffic = {k: sum(r[k] for r in rows if r["users"] is not None) for k in TRAFFIC}
    expected = {"traffic": traffic, "performance": {}}
    for strategy in (*STRATEGIES, "both"):
        chosen = STRATEGIES if strategy == "both" else (strategy,)
        scores = [r[f"{s}_score"] for r in rows for s in chosen if r[f"{s}_score"] is not None]
        perf = {"samples": len(scores),
                "performance_score_avg": sum(scores) / len(scores) if scores else None}  # fmt: skip
        for vital in VITALS:
            values = [r[f"{s}_{vital}"] for r in rows for s in chosen
                      if r[f"{s}_{vital}"] is not None]  # fmt: skip
            good, poor = THRESHOLDS[vital]
            perf[vital] = {
                "samples": len(values),
                "exact": {
                    p: nearest_rank(values, q)
                    for p, q in (("p50", 0.5), ("p75", 0.75), ("p95", 0.95))
                },
                "good": sum(v <= good for v in values) / len(values) if values else None,
                "poor": sum(v > poor for v in values) / len(values) if values else None,
            }
        expected["performance"][strategy] = perf
    return expected


# Decimals of each kind of metric in an answer, as docs/metrics.md documents them.
DECIMALS = {"engagement_seconds": 6, "bounce_rate": 6, "views_per_session": 6,
            "avg_engagement_seconds": 3, "performance_score_avg": 3, "good": 6,
            "needs_improvement": 6, "poor": 6, "ms": 1, "cls": 4}  # fmt: skip


def half_unit(kind: str) -> float:
    """The most that rounding to the documented decimals moves a value (plus the
    float error of an exact half, e.g. 78.5625 rounded half-to-even to 78.562)."""
    return 0.5 * 10 ** -DECIMALS[kind] * (1 + 1e-9)


def assert_matches(answer: dict, expected: dict) -> None:
    for key in TRAFFIC:
        tolerance = half_unit(key) if key in DECIMALS else 0
        assert math.isclose(answer["traffic"][key], expected["traffic"][key], rel_tol=1e-9,
                            abs_tol=tolerance), key  # fmt: skip
    sessions = expected["traffic"]["sessions"]
    if sessions:
        assert answer["traffic"]["bounce_rate"] == round(expected["traffic"]["bounces"] / sessions,
                                                         DECIMALS["bounce_rate"])  # fmt: skip
    for strategy, perf in expected["performance"].items():
        got = answer["performance"][strategy]
        assert got["samples"] == perf["samples"]
        if perf["performance_score_avg"] is None:
            assert got["performance_score_avg"] is None
        else:
            assert math.isclose(got["performance_score_avg"], perf["performance_score_avg"],
                                abs_tol=half_unit("performance_score_avg"))  # fmt: skip
        for vital in VITALS:
            want, have = perf[vital], got[vital]
            assert have["samples"] == want["samples"]
            for name, exact in want["exact"].items():
                if exact is None:
                    assert have[name] is None
                else:
                    tolerance = max(0.02 * exact, 0.005 if vital == "cls" else 1e-4)
                    tolerance += half_unit("cls" if vital == "cls" else "ms")
                    assert abs(have[name] - exact) <= tolerance, (strategy, vital, name)
            for share in ("good", "poor"):
                if want[share] is None:
                    assert have[share] is None
                else:
                    assert have[share] == round(want[share], DECIMALS[share]), (vital, share)


def float_decimals(body: bytes) -> list[tuple[str, int]]:
    """(metric kind, decimals written) of every non-integer number of a JSON answer, read
    from the text itself (``Decimal``), so that float noise cannot hide in a repr."""

    found: list[tuple[str, int]] = []

    def walk(value, key: str, parent: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k, key)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, parent)
        elif isinstance(value, Decimal):
            kind = ("cls" if parent == "cls" else "ms") if key in ("p50", "p75", "p95") else key
            found.append((kind, max(0, -value.as_tuple().exponent)))

    walk(json.loads(body, parse_float=Decimal), "", "")
    return found


def test_answers_carry_no_float_noise(dataset, api):
    """Every float of a real answer has at most the decimals documented for its kind."""
    q = "from=2024-12-20T03:00:00Z&to=2025-01-09T05:00:00Z"
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM page")
        (page,) = cursor.fetchone()
    urls = [f"/api/reports/summary?{q}", f"/api/reports/timeseries?granularity=hour&{q}",
            f"/api/reports/pages?{q}&limit=50", f"/api/reports/pages/{page}?{q}"]  # fmt: skip
    found = []
    for url in urls:
        for _ in range(2):  # computed, then from the cache
            response = api.get(url)
            assert response.status_code == 200, response.content
            found += float_decimals(response.content)
    kinds = {kind for kind, _ in found}
    assert kinds == set(DECIMALS), kinds  # every kind of metric met, and no other float
    noisy = [(kind, n) for kind, n in found if n > DECIMALS[kind]]
    assert not noisy, noisy[:10]
    assert max(n for kind, n in found if kind == "ms") == DECIMALS["ms"]  # not all whole


def test_summary_equals_page_hour_recomputation_for_random_ranges(dataset, api):
    rng = random.Random(7)
    hours = 6000 // 12
    for _ in range(12):
        a = rng.randrange(0, hours - 1)
        b = rng.randrange(a + 1, hours + 24)
        start, end = START + timedelta(hours=a), START + timedelta(hours=b)
        response = api.get(f"/api/reports/summary?from={iso(start)}&to={iso(end)}")
        assert response.status_code == 200, response.content
        assert_matches(response.json(), recompute(page_hour_rows(start, end)))


def test_summary_whole_year_and_filters(dataset, api):
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    body = api.get("/api/reports/summary?from=2025-01-01&to=2026-01-01").json()
    assert_matches(body, recompute(page_hour_rows(start, end)))
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(site_id), min(id) FROM page")
        site, page = cursor.fetchone()
    by_site = api.get(f"/api/reports/summary?from=2024-12-01&to=2026-01-01&site={site}").json()
    assert_matches(by_site, recompute(page_hour_rows(START, end, "AND h.site_id = %s", [site])))
    one = api.get(f"/api/reports/pages/{page}?from=2024-12-01&to=2026-01-01").json()
    assert one["page"]["id"] == page
    assert_matches(one, recompute(page_hour_rows(START, end, "AND h.page_id = %s", [page])))


def test_timeseries_buckets_each_equal_their_recomputation(dataset, api):
    start, end = START + timedelta(hours=5), START + timedelta(days=15, hours=3)
    body = api.get(f"/api/reports/timeseries?granularity=day&from={iso(start)}&to={iso(end)}")
    series = body.json()["series"]
    assert len(series) == 16
    assert series[0]["start"] == iso(start) and series[-1]["end"] == iso(end)
    for point in series:
        low = datetime.fromisoformat(point["start"])
        high = datetime.fromisoformat(point["end"])
        assert_matches(point, recompute(page_hour_rows(low, high)))


@pytest.mark.parametrize("granularity", ["hour", "interval", "day", "month", "year"])
def test_timeseries_granularities_add_up_to_the_summary(dataset, api, granularity):
    q = "from=2024-12-28T02:00:00Z&to=2025-01-03T07:00:00Z"
    series = api.get(f"/api/reports/timeseries?granularity={granularity}&{q}").json()["series"]
    total = api.get(f"/api/reports/summary?{q}").json()
    assert sum(p["traffic"]["views"] for p in series) == total["traffic"]["views"]
    assert (
        sum(p["performance"]["both"]["samples"] for p in series)
        == (total["performance"]["both"]["samples"])
    )


def test_top_pages_order_limit_cursor_and_filters(dataset, api):
    q = "from=2024-12-20&to=2025-02-01"
    first = api.get(f"/api/reports/pages?{q}&order_by=-views&limit=5").json()
    assert first["count"] == 12 and len(first["results"]) == 5
    second = api.get(f"/api/reports/pages?{q}&order_by=-views&limit=5&cursor={first['next']}")
    rows = first["results"] + second.json()["results"]
    views = [r["traffic"]["views"] for r in rows]
    assert views == sorted(views, reverse=True)
    assert len({r["page"]["id"] for r in rows}) == 10
    everything = page_hour_rows(
        datetime(2024, 12, 20, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
    )
    top = rows[0]["page"]["id"]
    assert rows[0]["traffic"]["views"] == sum(r["views"] or 0 for r in everything
                                              if r["page_id"] == top)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT path FROM page WHERE path <> '/' ORDER BY id LIMIT 1")
        prefix = "/" + cursor.fetchone()[0].split("/")[1]
        cursor.execute("SELECT id FROM page WHERE path LIKE %s", [prefix + "%"])
        matching = {page_id for (page_id,) in cursor.fetchall()}
    filtered = api.get(f"/api/reports/pages?{q}&path_prefix={prefix}&limit=50").json()
    assert {r["page"]["id"] for r in filtered["results"]} == matching


def test_csv_output_streams_one_row_per_bucket(dataset, api):
    response = api.get("/api/reports/timeseries?granularity=day&from=2024-12-21&to=2024-12-25"
                       "&format=csv")  # fmt: skip
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 4
    assert {"start", "end", "traffic.views", "performance.both.lcp_ms.p75"} <= set(rows[0])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2024-13-01&to=2025-01-01", "from"),
        ("from=2025-01-01&to=2024-12-01", "to"),
        ("from=2025-01-01T00:30:00Z&to=2025-02-01", "from"),
        ("to=2025-02-01", "from"),
        ("from=9999-12-31T23:00:00-01:00&to=2025-01-01", "from"),  # past datetime's range
        ("from=2025-01-01&to=9999-12-31", "to"),  # its year would end past year 9999
        ("from=1899-12-31T23:00:00Z&to=2025-01-01", "from"),
        ("from=2025-01-01&to=2025-01-02&site=2147483648", "site"),  # past PostgreSQL integer
        ("from=2025-01-01&to=2025-01-02&page=0", "page"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(api, query, field):
    response = api.get(f"/api/reports/summary?{query}")
    assert response.status_code == 400 and field in response.json()


def test_too_many_buckets_and_unknown_granularity_are_400(api, settings):
    settings.METRIFLOW_MAX_BUCKETS = 100
    too_many = api.get("/api/reports/timeseries?granularity=hour&from=2024-01-01&to=2024-02-01")
    assert too_many.status_code == 400 and "at most 100" in str(too_many.json())
    # The widest range of hours is refused at once: its buckets are computed, not listed.
    widest = api.get("/api/reports/timeseries?granularity=hour&from=1990-01-01&to=2100-01-01")
    assert widest.status_code == 400 and "more than 100 buckets" in str(widest.json())
    unknown = api.get("/api/reports/timeseries?granularity=week&from=2024-01-01&to=2024-02-01")
    assert unknown.status_code == 400 and "granularity" in unknown.json()


def test_a_late_batch_invalidates_the_cached_answer(dataset, api):
    q = "/api/reports/summary?from=2024-12-20T03:00:00Z&to=2025-01-09T05:00:00Z"
    before = api.get(q).json()
    assert api.get(q).json() == before  # cached, same answer
    ingest_files([str(dataset / n) for n in ("ga_late.json", "psi_late.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    pending = api.get(q).json()
    assert pending["freshness"]["pending"] is True
    stages.drain()
    after = api.get(q).json()
    assert after["freshness"]["pending"] is False
    assert after["freshness"]["pipeline_run_at"] > before["freshness"]["pipeline_run_at"]
    assert after["traffic"]["users"] > before["traffic"]["users"]
    start, end = datetime(2024, 12, 20, 3, tzinfo=UTC), datetime(2025, 1, 9, 5, tzinfo=UTC)
    assert_matches(after, recompute(page_hour_rows(start, end)))


def test_openapi_schema_validates_and_docs_are_served(api):
    result = run_manage("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null",
                        check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    anonymous = APIClient()
    assert anonymous.get("/api/schema/").status_code == 200
    for path in ("/api/docs/", "/swagger/"):
        page = anonymous.get(path)
        assert page.status_code == 200 and b"swagger" in page.content.lower()


def test_an_answer_computed_while_the_data_changed_is_not_served_again(pipeline_db):
    """The entry keeps the version read before computing: if the pipeline moved
    the version meanwhile, the next request recomputes instead of serving it."""
    from pipeline import dataversion
    from reporting import selectors

    calls = []

    def compute():
        calls.append(1)
        if len(calls) == 1:
            dataversion.bump()  # a stage commits while the answer is computed
        return {"n": len(calls)}

    params = {"test": "race", "at": datetime.now(UTC).isoformat()}
    assert selectors._cached("race", params, compute) == {"n": 1}
    assert selectors._cached("race", params, compute) == {"n": 2}  # recomputed
    assert selectors._cached("race", params, compute) == {"n": 2}  # now cached
    assert orjson.dumps(selectors._cached("race", params, compute, encoded=True)) == b'{"n":2}'
    assert len(calls) == 2


def test_cursors_round_trip_and_refuse_anything_else():
    from reporting import cursors

    assert cursors.decode(None) == 0
    assert cursors.decode(cursors.encode(40)) == 40
    for bad in ("x", "bzotMQ==", cursors.encode(-1), "%%%"):
        with pytest.raises(ValueError):
            cursors.decode(bad)


def test_an_answer_cached_before_redis_lost_the_version_is_not_served(pipeline_db):
    """Redis evicts or loses the data version but keeps an answer: the version made
    anew never equals the one the answer was stored under, so it is recomputed."""
    from django.core.cache import cache

    from pipeline import dataversion
    from reporting import selectors

    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    params = {"test": "evicted", "at": datetime.now(UTC).isoformat()}
    dataversion.bump()
    assert selectors._cached("evicted", params, compute) == {"n": 1}
    assert selectors._cached("evicted", params, compute) == {"n": 1}  # cached
    for _ in range(3):  # whatever the version was, counted up from 0 or from the clock
        cache.delete(dataversion.KEY)  # lost; the answer stays
        before = len(calls)
        assert selectors._cached("evicted", params, compute) == {"n": before + 1}
        assert selectors._cached("evicted", params, compute) == {"n": before + 1}
