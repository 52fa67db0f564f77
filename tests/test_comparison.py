"""Period comparison (``compare=previous_period|previous_year``) against a recomputation
from the page-hour rows, over data covering more than a year (so a range has data a
year earlier), a month and a year boundary and Feb 29, 2024."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from pipeline import stages
from pipeline.ingest import ingest_files
from reporting import comparison, selectors
from reporting.metrics import VITALS

from .contract import generate
from .test_reporting_reports import iso, page_hour_rows, recompute

pytestmark = pytest.mark.usefixtures("pipeline_db")
START = datetime(2023, 12, 20, tzinfo=UTC)
END = datetime(2025, 1, 9, tzinfo=UTC)  # the data: two pages, every hour of [START, END)
PAGES = 2
CHANGE_DECIMALS = 4  # docs/api.md, "Period comparison"


@pytest.fixture
def dataset(tmp_path):
    hours = int((END - START) / timedelta(hours=1))
    generate(tmp_path, "--records", str(hours * PAGES), "--pages", str(PAGES), "--sites", "2",
             "--start", START.isoformat())  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()
    return tmp_path


@pytest.fixture
def api(settings):
    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    client = APIClient()
    # Staff read every site (the scoping of members is tested with the access tests).
    reader = get_user_model().objects.create_user("reader", password="x", is_staff=True)
    client.force_authenticate(reader)
    return client


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------ the compared range


def year_before(moment: datetime) -> datetime:
    day = 28 if (moment.month, moment.day) == (2, 29) else moment.day
    return datetime(moment.year - 1, moment.month, day, moment.hour, tzinfo=UTC)


def expected_previous(mode: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The compared range as docs/api.md states it."""
    if mode == "previous_period":
        return start - (end - start), start
    low, high = year_before(start), year_before(end)
    if (end.month, end.day) == (2, 29) and start.date() < end.date():
        high = datetime(end.year - 1, 3, 1, tzinfo=UTC)  # the end of that Feb 28
    return low, high


@pytest.mark.parametrize(
    ("mode", "start", "end", "previous_start", "previous_end"),
    [
        ("previous_period", "2025-01-08", "2025-01-15", "2025-01-01", "2025-01-08"),
        ("previous_period", "2025-01-01T05", "2025-01-02T03", "2024-12-31T07", "2025-01-01T05"),
        ("previous_period", "2024-03-01", "2024-03-02", "2024-02-29", "2024-03-01"),
        ("previous_period", "2024-06-01", "2024-09-01", "2024-03-01", "2024-06-01"),
        ("previous_year", "2025-01-01", "2025-02-01", "2024-01-01", "2024-02-01"),
        ("previous_year", "2024-12-28T05", "2025-01-03T03", "2023-12-28T05", "2024-01-03T03"),
        ("previous_year", "2024-02-29", "2024-03-01", "2023-02-28", "2023-03-01"),
        ("previous_year", "2024-02-29T05", "2024-02-29T10", "2023-02-28T05", "2023-02-28T10"),
        ("previous_year", "2024-02-28", "2024-02-29", "2023-02-28", "2023-03-01"),
        ("previous_year", "2024-02-28T10", "2024-02-29T03", "2023-02-28T10", "2023-03-01"),
        ("previous_year", "2024-02-01", "2024-02-29T12", "2023-02-01", "2023-03-01"),
        ("previous_year", "2025-02-28", "2025-03-01", "2024-02-28", "2024-03-01"),
        ("previous_year", "2024-02-29T06", "2024-03-02", "2023-02-28T06", "2023-03-02"),
    ],
)
def test_the_compared_range(mode, start, end, previous_start, previous_end):
    got = comparison.previous_range(mode, at(start), at(end))
    assert got == (at(previous_start), at(previous_end))
    assert got == expected_previous(mode, at(start), at(end))
    assert got[0] < got[1]


# ------------------------------------------------------------------ metrics and change


def numbers(tree: dict, path: tuple = ()) -> dict[tuple, float | None]:
    """Every metric leaf of ``traffic`` and ``performance`` by its path."""
    out = {}
    for key, value in tree.items():
        if path == () and key not in ("traffic", "performance"):
            continue
        if isinstance(value, dict):
            out.update(numbers(value, (*path, key)))
        else:
            out[(*path, key)] = value
    return out


def bounds(expected: dict) -> dict[tuple, tuple[float, float] | None]:
    """What each metric of an answer may be, from the recomputation: (low, high), or
    None where it must be null. Rounding as docs/metrics.md documents it; percentiles
    within 2% (CLS: or 0.005) of the exact ones."""
    t = expected["traffic"]
    sessions = t["sessions"]
    out: dict[tuple, tuple[float, float] | None] = {}
    for key in ("users", "sessions", "views", "bounces"):
        out[("traffic", key)] = (t[key], t[key])
    seconds = t["engagement_seconds"]
    seconds_error = 5e-7 + 1e-9 * abs(seconds)
    out[("traffic", "engagement_seconds")] = (seconds - seconds_error, seconds + seconds_error)
    for key, num, error in (("bounce_rate", t["bounces"], 5e-7),
                            ("views_per_session", t["views"], 5e-7),
                            ("avg_engagement_seconds", seconds, 5e-4)):  # fmt: skip
        if sessions:
            error += seconds_error / sessions if key == "avg_engagement_seconds" else 0
            out[("traffic", key)] = (num / sessions - error, num / sessions + error)
        else:
            out[("traffic", key)] = None
    for strategy, perf in expected["performance"].items():
        base = ("performance", strategy)
        out[(*base, "samples")] = (perf["samples"], perf["samples"])
        score = perf["performance_score_avg"]
        out[(*base, "performance_score_avg")] = (
            None if score is None else (score - 5e-4 - 1e-9, score + 5e-4 + 1e-9)
        )
        for vital in VITALS:
            want = perf[vital]
            out[(*base, vital, "samples")] = (want["samples"], want["samples"])
            for name, exact in want["exact"].items():
                if exact is None:
                    out[(*base, vital, name)] = None
                    continue
                error = max(0.02 * exact, 0.005 if vital == "cls" else 1e-4)
                error += 0.5 * 10 ** -(4 if vital == "cls" else 1)
                out[(*base, vital, name)] = (exact - error, exact + error)
            good, poor = want["good"], want["poor"]
            shares = {"good": good, "poor": poor,
                      "needs_improvement": None if good is None else 1 - good - poor}  # fmt: skip
            for name, share in shares.items():
                out[(*base, vital, name)] = None if share is None else (share - 5e-7, share + 5e-7)
    return out


def assert_matches(answer: dict, rows: list[dict]) -> None:
    """Every metric of ``answer`` inside what the recomputation from ``rows`` allows."""
    served = numbers(answer)
    allowed = bounds(recompute(rows))
    assert set(served) == set(allowed)
    for path, value in served.items():
        if allowed[path] is None:
            assert value is None, path
        else:
            low, high = allowed[path]
            assert value is not None and low - 1e-12 <= value <= high + 1e-12, (
                path,
                value,
                low,
                high,
            )


def assert_change(answer_change: dict, current: dict, previous: dict, cur_rows, prev_rows):
    """``change`` holds a change for every metric, null exactly where the previous value
    is 0 or null or the current null, else (current - previous) / previous rounded to
    CHANGE_DECIMALS, inside what the recomputed values allow."""
    served_cur, served_prev, changes = numbers(current), numbers(previous), numbers(answer_change)
    assert set(changes) == set(served_cur) == set(served_prev)
    cur_b, prev_b = bounds(recompute(cur_rows)), bounds(recompute(prev_rows))
    assert set(cur_b) == set(changes)
    half = 0.5 * 10**-CHANGE_DECIMALS
    checked = 0
    for path, got in changes.items():
        c, p = served_cur[path], served_prev[path]
        if c is None or not p:
            assert got is None, path
            assert cur_b[path] is None or prev_b[path] is None or prev_b[path][0] <= 0, path
            continue
        assert got == round((c - p) / p, CHANGE_DECIMALS), path
        low_c, high_c = cur_b[path]
        low_p, high_p = prev_b[path]
        if low_p > 0:
            assert low_c / high_p - 1 - half - 1e-12 <= got <= high_c / low_p - 1 + half + 1e-12, (
                path,
                got,
            )
            checked += 1
    return checked


def test_summary_compared_with_the_previous_period_and_year_for_random_ranges(dataset, api):
    rng = random.Random(11)
    hours = int((END - START) / timedelta(hours=1))
    year = timedelta(days=366)
    checked = 0
    cases = []
    for _ in range(6):  # previous_period: both ranges inside the data, any alignment
        length = rng.randrange(1, 24 * 20)
        a = rng.randrange(length, hours - length)
        cases.append(("previous_period", START + timedelta(hours=a), length))
    for _ in range(6):  # previous_year: ranges over Dec 2024 / Jan 2025 and a year before
        a = rng.randrange(int(year / timedelta(hours=1)), hours - 24)
        length = rng.randrange(1, min(24 * 12, hours - a))
        cases.append(("previous_year", START + timedelta(hours=a), length))
    cases.append(("previous_year", at("2024-12-27T05"), 24 * 8 + 3))  # month and year bounds
    for mode, start, length in cases:
        end = start + timedelta(hours=length)
        response = api.get(f"/api/reports/summary?from={iso(start)}&to={iso(end)}&compare={mode}")
        assert response.status_code == 200, response.content
        body = response.json()
        low, high = expected_previous(mode, start, end)
        previous = body["previous"]
        assert (previous["from"], previous["to"]) == (iso(low), iso(high)), mode
        assert set(previous) == {"from", "to", "traffic", "performance", "freshness"}
        cur_rows, prev_rows = page_hour_rows(start, end), page_hour_rows(low, high)
        assert prev_rows, (mode, start, end)  # the compared range holds data
        assert_matches(body, cur_rows)
        assert_matches(previous, prev_rows)
        plain = api.get(f"/api/reports/summary?from={iso(start)}&to={iso(end)}").json()
        assert {k: v for k, v in body.items() if k not in ("previous", "change")} == plain
        checked += assert_change(body["change"], body, previous, cur_rows, prev_rows)
    assert checked > 13 * 50  # most metrics were checked against the recomputation


def test_no_data_a_year_earlier_gives_null_changes_and_filters_apply_to_both(dataset, api):
    q = "from=2024-01-02T03:00:00Z&to=2024-01-09T00:00:00Z"
    body = api.get(f"/api/reports/summary?{q}&compare=previous_year").json()
    assert (body["previous"]["from"], body["previous"]["to"]) == (
        "2023-01-02T03:00:00Z",
        "2023-01-09T00:00:00Z",
    )
    assert body["previous"]["traffic"]["views"] == 0
    assert body["previous"]["performance"]["both"]["samples"] == 0
    assert body["traffic"]["views"] > 0
    changes = numbers(body["change"])
    assert changes and all(value is None for value in changes.values())
    # The view's filters apply to both ranges.
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM page")
        (page,) = cursor.fetchone()
    q = "from=2024-12-30T00:00:00Z&to=2025-01-04T06:00:00Z"
    one = api.get(f"/api/reports/summary?{q}&page={page}&compare=previous_year").json()
    start, end = at("2024-12-30"), at("2025-01-04T06")
    low, high = expected_previous("previous_year", start, end)
    where = ("AND h.page_id = %s", [page])
    cur_rows, prev_rows = page_hour_rows(start, end, *where), page_hour_rows(low, high, *where)
    assert_matches(one, cur_rows)
    assert_matches(one["previous"], prev_rows)
    assert_change(one["change"], one, one["previous"], cur_rows, prev_rows)
    everything = api.get(f"/api/reports/summary?{q}&compare=previous_year").json()
    assert 0 < one["traffic"]["views"] < everything["traffic"]["views"]
    assert 0 < one["previous"]["traffic"]["views"] < everything["previous"]["traffic"]["views"]


# ------------------------------------------------------------------ timeseries


def floor(granularity: str, moment: datetime) -> datetime:
    if granularity == "hour":
        return moment
    if granularity == "interval":
        hours = settings.METRIFLOW_INTERVAL_HOURS
        return moment.replace(hour=moment.hour // hours * hours)
    if granularity == "day":
        return moment.replace(hour=0)
    return moment.replace(day=1, hour=0)


def step(granularity: str, moment: datetime) -> datetime:
    if granularity == "month":
        carry, month = divmod(moment.month, 12)
        return moment.replace(year=moment.year + carry, month=month + 1)
    size = {"hour": 1, "interval": settings.METRIFLOW_INTERVAL_HOURS, "day": 24}[granularity]
    return moment + timedelta(hours=size)


def expected_buckets(granularity: str, start: datetime, end: datetime) -> list[tuple]:
    out, moment = [], floor(granularity, start)
    while moment < end:
        following = step(granularity, moment)
        out.append((max(moment, start), min(following, end)))
        moment = following
    return out


TIMESERIES_CASES = [
    ("hour", "previous_period", "2024-12-31T20", "2025-01-01T04"),
    ("hour", "previous_year", "2024-12-31T21", "2025-01-01T02"),
    ("interval", "previous_period", "2024-12-31T02", "2025-01-01T13"),
    ("day", "previous_year", "2024-12-28T05", "2025-01-03T03"),
    ("day", "previous_period", "2024-12-29", "2025-01-05"),
    ("day", "previous_period", "2025-01-01T23", "2025-01-03T01"),  # one bucket fewer before
    ("day", "previous_year", "2024-02-27T05", "2024-03-02"),  # Feb 29: both on Feb 28, 2023
    ("day", "previous_year", "2024-12-30", "2025-01-02"),
    ("month", "previous_period", "2024-06-01", "2024-09-01"),
    ("month", "previous_year", "2024-12-20T07", "2025-01-08T09"),
    ("month", "previous_period", "2024-03-01", "2024-05-01"),  # 61 days: one bucket more before
]


def test_timeseries_pairs_each_bucket_with_the_one_a_period_earlier(dataset, api):
    for case in TIMESERIES_CASES:  # one data set for all the cases
        assert_timeseries_pairing(api, *case)


def assert_timeseries_pairing(api, granularity: str, mode: str, start: str, end: str) -> None:
    start, end = at(start), at(end)
    url = f"/api/reports/timeseries?granularity={granularity}&from={iso(start)}&to={iso(end)}"
    response = api.get(f"{url}&compare={mode}")
    assert response.status_code == 200, response.content
    body = response.json()
    low, high = expected_previous(mode, start, end)
    assert (body["previous"]["from"], body["previous"]["to"]) == (iso(low), iso(high))
    assert set(body["previous"]) == {"from", "to", "freshness"}
    current = expected_buckets(granularity, start, end)
    previous = expected_buckets(granularity, low, high)
    if mode == "previous_year":
        by_start = {bucket[0]: bucket for bucket in previous}
        paired = [by_start.get(year_before(bucket[0])) for bucket in current]
    else:
        paired = [previous[i] if i < len(previous) else None for i in range(len(current))]
    series = body["series"]
    assert [(p["start"], p["end"]) for p in series] == [(iso(a), iso(b)) for a, b in current]
    plain = api.get(url).json()
    assert [{k: v for k, v in p.items() if k not in ("previous", "change")} for p in series] == (
        plain["series"]
    )
    checked = 0
    for point, bucket, compared in zip(series, current, paired, strict=True):
        if compared is None:
            assert point["previous"] is None and point["change"] is None
            continue
        assert (point["previous"]["start"], point["previous"]["end"]) == tuple(map(iso, compared))
        cur_rows, prev_rows = page_hour_rows(*bucket), page_hour_rows(*compared)
        assert_matches(point, cur_rows)
        assert_matches(point["previous"], prev_rows)
        checked += assert_change(point["change"], point, point["previous"], cur_rows, prev_rows)
    assert any(p is not None for p in paired)
    with_data = [c for c in paired if c is not None and c[0] >= START]
    assert checked >= 20 * len(with_data)
    if "02-27" in iso(start):  # Feb 28 and Feb 29, 2024 both compare with Feb 28, 2023
        leap = {p["start"][:10]: p["previous"]["start"][:10] for p in series}
        assert leap["2024-02-28"] == leap["2024-02-29"] == "2023-02-28"


def test_timeseries_with_an_unpaired_bucket_and_csv_columns(dataset, api):
    q = "granularity=day&from=2025-01-01T23:00:00Z&to=2025-01-03T01:00:00Z"
    body = api.get(f"/api/reports/timeseries?{q}&compare=previous_period").json()
    assert [p["previous"] is None for p in body["series"]] == [False, False, True]
    response = api.get(f"/api/reports/timeseries?{q}&compare=previous_period&format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3
    for row, point in zip(rows, body["series"], strict=True):
        assert row["traffic.views"] == str(point["traffic"]["views"])
        if point["previous"] is None:
            assert row["previous.start"] == row["previous.traffic.views"] == ""
            assert row["change.traffic.views"] == ""
        else:
            assert row["previous.start"] == point["previous"]["start"]
            assert row["previous.traffic.views"] == str(point["previous"]["traffic"]["views"])
            assert row["change.traffic.views"] == str(point["change"]["traffic"]["views"])
            assert row["change.performance.both.lcp_ms.p75"] == str(
                point["change"]["performance"]["both"]["lcp_ms"]["p75"]
            )
    summary_q = "from=2024-12-27T05:00:00Z&to=2025-01-04T08:00:00Z&compare=previous_year"
    summary = api.get(f"/api/reports/summary?{summary_q}").json()
    response = api.get(f"/api/reports/summary?{summary_q}&format=csv")
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert row["previous.from"] == "2023-12-27T05:00:00Z"
    assert row["previous.traffic.sessions"] == str(summary["previous"]["traffic"]["sessions"])
    assert row["change.traffic.sessions"] == str(summary["change"]["traffic"]["sessions"])


# ------------------------------------------------------------------ unchanged, cached, refused


def test_answers_without_compare_are_the_selectors_answers_byte_for_byte(dataset, api):
    start, end = at("2024-12-30T05"), at("2025-01-02T03")
    q = f"from={iso(start)}&to={iso(end)}"
    summary = api.get(f"/api/reports/summary?{q}")
    expected = orjson.dumps(selectors.summary(start, end, selectors.Filters(), True))
    assert summary.content == expected
    assert b'"previous"' not in summary.content and b'"change"' not in summary.content
    series = api.get(f"/api/reports/timeseries?granularity=day&{q}")
    expected = orjson.dumps(selectors.timeseries("day", start, end, selectors.Filters(), True))
    assert series.content == expected
    csv_answer = api.get(f"/api/reports/timeseries?granularity=day&{q}&format=csv")
    header = b"".join(csv_answer.streaming_content).decode().splitlines()[0].split(",")
    assert not [c for c in header if c.startswith(("previous", "change"))]


def test_a_warm_comparison_is_two_cached_reads(dataset, api):
    q = "from=2024-12-27T05:00:00Z&to=2025-01-04T08:00:00Z"
    for mode in comparison.MODES:
        api.get(f"/api/reports/summary?{q}&compare={mode}")
        api.get(f"/api/reports/timeseries?granularity=day&{q}&compare={mode}")
    summary = "/api/reports/summary?"
    urls = [
        f"{summary}{q}",  # the range itself, and the ranges it was compared with
        f"{summary}from=2024-12-19T02:00:00Z&to=2024-12-27T05:00:00Z",
        f"{summary}from=2023-12-27T05:00:00Z&to=2024-01-04T08:00:00Z",
        f"{summary}{q}&compare=previous_year",
        f"/api/reports/timeseries?granularity=day&{q}&compare=previous_period",
    ]
    with CaptureQueriesContext(connection) as queries:
        for url in urls:
            assert api.get(url).status_code == 200
    assert len(queries) == 0, [q["sql"][:80] for q in queries]


@pytest.mark.parametrize(
    ("report", "q"),
    [
        ("summary", "from=2025-01-01&to=2025-01-02"),
        ("timeseries", "from=2025-01-01&to=2025-01-02&granularity=day"),
    ],
)
def test_a_bad_compare_value_is_a_400_naming_it(api, report, q):
    for bad in ("previous_week", "PREVIOUS_YEAR", "1"):
        response = api.get(f"/api/reports/{report}?{q}&compare={bad}")
        assert response.status_code == 400
        assert list(response.json()) == ["compare"]
    response = api.get(f"/api/reports/{report}?{q}&compare=previous_year&format=csv")
    assert response.status_code == 200


def test_the_bucket_limit_counts_the_compared_range(api, settings):
    settings.METRIFLOW_MAX_BUCKETS = 100
    q = "granularity=hour&from=2025-01-01T00:00:00Z&to=2025-01-03T02:00:00Z"  # 50 hours
    assert api.get(f"/api/reports/timeseries?{q}").status_code == 200
    assert api.get(f"/api/reports/timeseries?{q}&compare=previous_year").status_code == 200
    q = "granularity=hour&from=2025-01-01T00:00:00Z&to=2025-01-03T03:00:00Z"  # 51 hours
    assert api.get(f"/api/reports/timeseries?{q}").status_code == 200
    refused = api.get(f"/api/reports/timeseries?{q}&compare=previous_period")
    assert refused.status_code == 400
    assert "more than 100 buckets in this range and the range it is compared with" in str(
        refused.json()["granularity"]
    )
    # 6 days of 2025 and the 7 days of 2024 a year earlier that hold Feb 29.
    settings.METRIFLOW_MAX_BUCKETS = 13
    q = "granularity=day&from=2025-02-26&to=2025-03-04&compare=previous_year"
    assert api.get(f"/api/reports/timeseries?{q}").status_code == 200
    settings.METRIFLOW_MAX_BUCKETS = 12
    assert api.get(f"/api/reports/timeseries?{q}").status_code == 400


def test_relative_change_rounding_and_nulls():
    assert comparison.relative_change(150, 100) == 0.5
    assert comparison.relative_change(0, 100) == -1.0
    assert comparison.relative_change(1, 3) == round(-2 / 3, CHANGE_DECIMALS) == -0.6667
    assert comparison.relative_change(5, 0) is None
    assert comparison.relative_change(5, None) is None
    assert comparison.relative_change(None, 5) is None
    assert math.isclose(comparison.relative_change(0.123457, 0.1), 0.2346)
