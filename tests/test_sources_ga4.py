"""``ingest --format ga4``: GA4 Data API runReport responses against an independent reading.

Every expected record is computed here from the rows the test built: pages with
the tests' own canonical form (tests/contract.py), hours by searching the UTC
instants at which the zone's clock shows the local hour (not by the converter's
method), bounces with decimal arithmetic.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from pipeline.ingest import ingest_file
from pipeline.ingest.formats.ga4 import REPORT_METRICS as METRICS
from reporting import selectors

from .conftest import REPO_ROOT, run_manage
from .contract import canonical, generate

pytestmark = pytest.mark.usefixtures("pipeline_db")


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def response(rows, *, dims=("dateHour", "pageLocation"), metrics=METRICS, zone="UTC", **meta):
    """A runReport response; each row a dict by header name. Headers in the order given."""
    return {
        "dimensionHeaders": [{"name": d} for d in dims],
        "metricHeaders": [{"name": m, "type": "TYPE_INTEGER"} for m in metrics],
        "rows": [
            {
                "dimensionValues": [{"value": row[d]} for d in dims],
                "metricValues": [{"value": row[m]} for m in metrics],
            }
            for row in rows
        ],
        "rowCount": len(rows),
        "metadata": {"currencyCode": "USD", "timeZone": zone, **meta},
        "kind": "analyticsData#runReport",
    }


def write(path, responses, layout="array", indent=None, compress=False) -> str:
    if layout == "single":
        (body,) = responses
        text = json.dumps(body, indent=indent)
    elif layout == "array":
        text = json.dumps(responses, indent=indent)
    else:
        text = "".join(json.dumps(r) + "\n" for r in responses)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def ingest(path, **options):
    return ingest_file(str(path), file_format="ga4", **options)


def raw_rows(batch_id: int) -> dict[int, tuple]:
    rows = query(
        "SELECT r.position, p.url, r.hour, r.users, r.sessions, r.views, r.bounces, "
        "r.engagement_seconds FROM raw_ga r JOIN page p ON p.id = r.page_id "
        "WHERE r.batch_id = %s",
        (batch_id,),
    )
    return {row[0]: row[1:] for row in rows}


def rejects(batch_id: int) -> dict[int, str]:
    rows = query("SELECT position, reason FROM ingest_reject WHERE batch_id = %s", (batch_id,))
    return dict(rows)


def expected_hour(date_hour: str, zone: str) -> datetime | None:
    """The UTC hour in which ``zone``'s clock first shows a time of ``date_hour``, or None.

    Searched over every quarter of an hour around the day (offsets and their
    changes are whole quarters of an hour), independently of the converter.
    """
    local = datetime.strptime(date_hour, "%Y%m%d%H")
    tz = ZoneInfo(zone)
    at = datetime(local.year, local.month, local.day, tzinfo=UTC) - timedelta(days=1)
    for _ in range(4 * 24 * 3):
        shown = at.astimezone(tz)
        if (shown.year, shown.month, shown.day, shown.hour) == (
            local.year, local.month, local.day, local.hour,
        ):  # fmt: skip
            return at.replace(minute=0)
        at += timedelta(minutes=15)
    return None


def random_row(rng: random.Random, date_hour: str, url: str) -> dict:
    sessions = rng.randint(0, 400)
    return {
        "dateHour": date_hour,
        "pageLocation": url,
        "activeUsers": str(rng.randint(0, sessions)),
        "sessions": str(sessions),
        "screenPageViews": str(sessions + rng.randint(0, 900)),
        "userEngagementDuration": str(rng.randint(0, 50_000)),
        "engagedSessions": str(rng.randint(0, sessions)),
        "newUsers": str(rng.randint(0, 9)),
    }


def expected_record(row: dict, zone: str) -> tuple:
    """(url, hour, users, sessions, views, bounces, engagement) from a row, independently."""
    if "pageLocation" in row:
        url = row["pageLocation"]
    else:
        url = "https://" + row["hostName"] + row["pagePath"]
    sessions = int(row["sessions"])
    if "engagedSessions" in row:
        bounces = sessions - int(row["engagedSessions"])
    else:
        product = Decimal(row["bounceRate"]) * sessions
        bounces = int(product.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return (
        canonical(url), expected_hour(row["dateHour"], zone), int(row["activeUsers"]), sessions,
        int(row["screenPageViews"]), bounces, float(row["userEngagementDuration"]),
    )  # fmt: skip


def rows_over(rng, hours: list[str], pages: int) -> list[dict]:
    return [
        random_row(rng, hour, f"https://Shop.Example.com:443/p/{n}/?utm={rng.randint(0, 9)}#x")
        for hour in hours
        for n in range(pages)
    ]


@pytest.mark.parametrize(
    ("layout", "indent", "compress"),
    [("single", None, False), ("array", None, False), ("ndjson", None, False),
     ("array", 2, True), ("single", 2, False)],
)  # fmt: skip
def test_rows_become_the_contract_records_whatever_the_layout(tmp_path, layout, indent, compress):
    rng = random.Random(1)
    hours = [f"2025031{d}{h:02d}" for d in (1, 2) for h in range(0, 24, 5)]
    count = 1 if layout == "single" else 3
    built = [rows_over(rng, hours[i::count], 4) for i in range(count)]
    path = write(tmp_path / "report.json", [response(rows) for rows in built], layout, indent,
                 compress)  # fmt: skip
    result = ingest(path)
    assert result.status == "loaded" and result.source == "ga", result.message
    flat = [row for rows in built for row in rows]
    assert raw_rows(result.batch_id) == {
        position: expected_record(row, "UTC") for position, row in enumerate(flat, start=1)
    }
    assert rejects(result.batch_id) == {}


def test_headers_in_any_order_and_extra_metrics_map_by_name(tmp_path):
    rng = random.Random(2)
    rows = rows_over(rng, ["2025031100", "2025031101"], 5)
    orders = [
        (("dateHour", "pageLocation"), (*METRICS, "newUsers")),
        (("pageLocation", "dateHour"), ("newUsers", *reversed(METRICS))),
        (("pageLocation", "dateHour"), tuple(sorted(METRICS))),
    ]
    responses = [response(rows, dims=d, metrics=m) for d, m in orders]
    result = ingest(write(tmp_path / "orders.json", responses))
    assert result.status == "loaded", result.message
    got = raw_rows(result.batch_id)
    for index in range(len(orders)):  # every response gives the same records
        first = index * len(rows) + 1
        assert [got[first + n] for n in range(len(rows))] == [
            expected_record(row, "UTC") for row in rows
        ]


def test_host_name_and_page_path_make_the_page(tmp_path):
    rng = random.Random(3)
    rows = []
    for n, (host, path) in enumerate(
        [("www.example.com", "/a/"), ("Shop.Example.com", "/b/c"), ("example.org", "/")]
    ):
        row = random_row(rng, f"20250311{n:02d}", "unused")
        del row["pageLocation"]
        rows.append({**row, "hostName": host, "pagePath": path})
    dims = ("hostName", "dateHour", "pagePath")
    result = ingest(write(tmp_path / "host.json", [response(rows, dims=dims)]))
    assert raw_rows(result.batch_id) == {
        n: expected_record(row, "UTC") for n, row in enumerate(rows, start=1)
    }
    assert [r[0] for r in raw_rows(result.batch_id).values()] == [
        "https://www.example.com/a", "https://shop.example.com/b/c", "https://example.org/",
    ]  # fmt: skip


def test_bounce_rate_times_sessions_rounded_when_engaged_sessions_is_absent(tmp_path):
    rng = random.Random(4)
    rows = []
    for n in range(40):
        row = random_row(rng, f"202503{11 + n // 24}{n % 24:02d}", f"https://example.com/{n}")
        del row["engagedSessions"]
        sessions = [0, 1, 2, 3, 4, 8, 10, 200][n % 8]
        row["sessions"] = str(sessions)
        row["activeUsers"] = str(min(int(row["activeUsers"]), sessions))
        # Halves included: 0.5 x 1, 0.125 x 8, 0.25 x 2 ...
        row["bounceRate"] = ["0.5", "0.125", "0.25", "0.3333333333", "1", "0", "0.45", "0.875"][
            n % 8
        ]
        rows.append(row)
    metrics = ("bounceRate", "sessions", "activeUsers", "screenPageViews", "userEngagementDuration")
    result = ingest(write(tmp_path / "rate.json", [response(rows, metrics=metrics)]))
    assert result.status == "loaded", result.message
    assert raw_rows(result.batch_id) == {
        n: expected_record(row, "UTC") for n, row in enumerate(rows, start=1)
    }


@pytest.mark.parametrize(
    ("zone", "days"),
    [
        ("America/New_York", ("20240310", "20241103")),  # spring forward, fall back
        ("Europe/Berlin", ("20240331", "20241027")),
        ("Asia/Kolkata", ("20240310", "20241103")),  # +05:30, no daylight saving
        ("Australia/Lord_Howe", ("20240407", "20241006")),  # a half-hour change
    ],
)
def test_date_hours_are_local_time_converted_across_daylight_saving(tmp_path, zone, days):
    rng = random.Random(5)
    hours = [f"{day}{h:02d}" for day in days for h in range(24)]
    rows = [random_row(rng, hour, f"https://example.com/{hour}") for hour in hours]
    result = ingest(write(tmp_path / "dst.json", [response(rows, zone=zone)]))
    got, refused = raw_rows(result.batch_id), rejects(result.batch_id)
    expected = {n: expected_record(row, zone) for n, row in enumerate(rows, start=1)}
    missing = {n for n, record in expected.items() if record[1] is None}
    assert got == {n: record for n, record in expected.items() if n not in missing}
    assert set(refused) == missing
    for n in missing:
        assert "does not exist" in refused[n] and zone in refused[n]
    # A whole-hour spring forward skips a local hour; a half-hour one skips only part
    # of one (its hour starts at its first half), and Kolkata changes nothing.
    assert bool(missing) == (zone in ("America/New_York", "Europe/Berlin"))
    # The repeated hour: GA4's one dateHour is the first occurrence, so the second
    # UTC hour of the repetition has no row and no two rows share a UTC hour.
    assert len({record[1] for record in got.values()}) == len(got)


def test_aggregated_and_bad_rows_are_rejected_with_position_and_reason(tmp_path):
    rng = random.Random(6)
    good = rows_over(rng, ["2025031100"], 3)
    bad = {
        "(other)": {**good[0], "pageLocation": "(other)"},
        "(not set)": {**good[0], "pageLocation": "(not set)"},
        "activeUsers must be an integer": {**good[0], "activeUsers": "1.5"},
        "sessions must be an integer": {**good[0], "sessions": ""},
        "engagedSessions (9) must be <= sessions (3)": {
            **good[0], "sessions": "3", "activeUsers": "1", "engagedSessions": "9",
        },
        "must be between 0 and": {**good[0], "screenPageViews": "-4"},
        "dateHour must be YYYYMMDDHH": {**good[0], "dateHour": "2025-03-11"},
        "month must be in 1..12": {**good[0], "dateHour": "2025131100"},
        "userEngagementDuration must be a number": {**good[0], "userEngagementDuration": "x"},
        "page: not an absolute http(s) URL": {**good[0], "pageLocation": "ftp://example.com/a"},
    }  # fmt: skip
    rows = [good[0], *bad.values(), good[1], good[2]]
    body = response(rows)
    body["rows"].insert(3, {"dimensionValues": [{"value": "2025031100"}], "metricValues": []})
    body["rows"].insert(4, {"metricValues": []})
    result = ingest(write(tmp_path / "bad.json", [body]))
    refused = rejects(result.batch_id)
    reasons = list(bad)
    positions = [2, 3, 6, 7, 8, 9, 10, 11, 12, 13]  # after the two shapeless rows at 4 and 5
    for position, reason in zip(positions, reasons, strict=True):
        assert reason in refused[position], (position, refused[position])
    assert "1 dimension and 0 metric values" in refused[4]
    assert "dimensionValues" in refused[5]
    assert refused[2].startswith("page is '(other)'") and refused[3].startswith("page is '(not")
    assert raw_rows(result.batch_id) == {
        1: expected_record(good[0], "UTC"),
        14: expected_record(good[1], "UTC"),
        15: expected_record(good[2], "UTC"),
    }
    raw = query("SELECT raw FROM ingest_reject WHERE batch_id = %s AND position = 2",
                (result.batch_id,))  # fmt: skip
    assert json.loads(raw[0][0]) == body["rows"][1]


@pytest.mark.parametrize(
    ("change", "wording"),
    [
        (lambda r: r["dimensionHeaders"].pop(0), "dimensionHeaders lack 'dateHour'"),
        (lambda r: r["dimensionHeaders"].pop(1), "lack 'pageLocation' (or both"),
        (lambda r: r["metricHeaders"].pop(2), "metricHeaders lack 'screenPageViews'"),
        (lambda r: r["metricHeaders"].pop(4), "'engagedSessions (or bounceRate)'"),
        (lambda r: r["metadata"].pop("timeZone"), "no metadata.timeZone"),
        (lambda r: r["metadata"].update(timeZone="Mars/Olympus"), "not an IANA time zone"),
        (lambda r: r["dimensionHeaders"].append({"name": "country"}), "'country' would split"),
    ],
)
def test_a_response_without_a_required_header_is_a_file_error(
    tmp_path, test_database_env, change, wording
):
    rng = random.Random(7)
    first, second = rows_over(rng, ["2025031100"], 3), rows_over(rng, ["2025031101"], 3)
    broken = response(second)
    change(broken)
    path = write(tmp_path / "header.json", [response(first), broken])
    done = run_manage("ingest", "--format", "ga4", path, env=test_database_env, check=False)
    assert done.returncode != 0
    assert "not a GA4 runReport response at record 4: response 2: " in done.stderr
    assert wording in done.stderr
    (batch_id,) = query("SELECT id FROM ingest_batch")[0]
    assert raw_rows(batch_id) == {
        n: expected_record(row, "UTC") for n, row in enumerate(first, start=1)
    }
    assert wording in rejects(batch_id)[4]


def test_source_is_implied_and_a_contradicting_source_is_refused(tmp_path, test_database_env):
    path = write(
        tmp_path / "psi_named.json", [response(rows_over(random.Random(8), ["2025031100"], 2))]
    )
    done = run_manage("ingest", "--format", "ga4", path, env=test_database_env)
    assert "ga batch" in done.stdout
    refused = run_manage("ingest", "--format", "ga4", "--source", "psi", path,
                         env=test_database_env, check=False)  # fmt: skip
    assert refused.returncode != 0 and "--format ga4 files hold ga records" in refused.stderr


def test_duplicates_last_wins_across_responses_and_batches(tmp_path):
    from pipeline import stages

    rng = random.Random(9)
    rows = rows_over(rng, ["2025031100", "2025031101"], 3)
    later = [random_row(rng, row["dateHour"], row["pageLocation"]) for row in rows]
    ingest(write(tmp_path / "a.json", [response(rows), response(later[:3])]))
    ingest(write(tmp_path / "b.json", [response(later[3:])]))
    stages.drain()
    staged = query(
        "SELECT p.url, s.hour, s.users, s.sessions, s.views, s.bounces, s.engagement_seconds "
        "FROM staged_ga s JOIN page p ON p.id = s.page_id"
    )
    assert sorted(staged) == sorted(expected_record(row, "UTC") for row in later)


def test_quality_flags_are_kept_on_the_batch_and_shown_for_the_range_they_touch(tmp_path):
    rng = random.Random(10)
    plain = response(rows_over(rng, ["2025031100"], 2))
    other = response(rows_over(rng, ["2025031200", "2025031205"], 2), dataLossFromOtherRow=True)
    sampled = response(
        rows_over(rng, ["2025031300"], 2),
        subjectToThresholding=True,
        samplingMetadatas=[{"samplesReadCount": "1000", "samplingSpaceSize": "50000"}],
    )
    result = ingest(write(tmp_path / "flags.json", [plain, other, sampled]))
    assert query(
        "SELECT response, rows, first_hour, last_hour, data_loss_from_other_row, "
        "subject_to_thresholding, sampling::jsonb -> 0 ->> 'samplingSpaceSize' "
        "FROM ingest_batch_quality WHERE batch_id = %s "
        "ORDER BY response",
        (result.batch_id,),
    ) == [
        (2, 4, datetime(2025, 3, 12, tzinfo=UTC), datetime(2025, 3, 12, 5, tzinfo=UTC),
         True, False, None),
        (3, 2, datetime(2025, 3, 13, tzinfo=UTC), datetime(2025, 3, 13, tzinfo=UTC),
         False, True, "50000"),
    ]  # fmt: skip

    def flags(start, end):
        return selectors.freshness(start, end)["quality"]

    day = datetime(2025, 3, 11, tzinfo=UTC)
    assert flags(day, day + timedelta(days=1)) == []  # the unflagged response's day
    assert flags(day + timedelta(days=1, hours=5), day + timedelta(days=1, hours=6)) == [
        {"batch": result.batch_id, "responses": 1, "rows": 4,
         "first_hour": datetime(2025, 3, 12, tzinfo=UTC),
         "last_hour": datetime(2025, 3, 12, 5, tzinfo=UTC),
         "data_loss_from_other_row": True, "subject_to_thresholding": False, "sampled": False}
    ]  # fmt: skip
    whole = flags(day, day + timedelta(days=3))
    assert len(whole) == 1 and whole[0]["responses"] == 2 and whole[0]["rows"] == 6
    assert whole[0]["data_loss_from_other_row"] and whole[0]["sampled"]
    assert flags(day + timedelta(days=1, hours=6), day + timedelta(days=2)) == []


def test_quality_appears_in_the_reports_of_the_api(tmp_path, api):
    from pipeline import stages

    rows = rows_over(random.Random(11), ["2025031200"], 2)
    result = ingest(write(tmp_path / "t.json", [response(rows, subjectToThresholding=True)]))
    stages.drain()
    answer = api.get("/api/reports/summary", {"from": "2025-03-12", "to": "2025-03-13"}).json()
    assert answer["freshness"]["quality"] == [
        {"batch": result.batch_id, "responses": 1, "rows": 2,
         "first_hour": "2025-03-12T00:00:00Z", "last_hour": "2025-03-12T00:00:00Z",
         "data_loss_from_other_row": False, "subject_to_thresholding": True, "sampled": False}
    ]  # fmt: skip
    other = api.get("/api/reports/summary", {"from": "2025-03-13", "to": "2025-03-14"}).json()
    assert other["freshness"]["quality"] == []


@pytest.fixture
def api(settings):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    user = get_user_model().objects.create_user("ga4-reader", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def peak_rss_of_ingest(path: str, file_format: str, env: dict) -> tuple[int, str]:
    """(peak RSS in bytes, stdout) of ``manage.py ingest`` run as a child process."""
    # A parent of its own, whose only child is the command: its RUSAGE_CHILDREN peak
    # is the command's (and any process the command waited for).
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:])\n"
        "print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, str(REPO_ROOT / "manage.py"), "ingest",
         "--format", file_format, path],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    peak_kb = int(done.stderr.rsplit("peak ", 1)[1].split()[0])  # Linux: kilobytes
    return peak_kb * 1024, done.stdout


@pytest.mark.slow
def test_a_200_mb_file_streams_in_bounded_memory(tmp_path, test_database_env):
    # Responses of 250,000 rows (the API's most per page, ~50 MB each), from the generator.
    rows = 1_000_000
    generate(tmp_path, "--records", str(rows), "--pages", "2000", "--sources", "ga",
             "--format", "ga4", "--ga4-page-rows", "250000")  # fmt: skip
    path = str(tmp_path / "ga4.json")
    assert os.path.getsize(path) > 180 << 20
    peak, out = peak_rss_of_ingest(path, "ga4", test_database_env)
    assert f"{rows:,} accepted, 0 rejected" in out
    assert query("SELECT count(*) FROM raw_ga") == [(rows,)]
    assert peak < 200 << 20, f"peak RSS {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("indent", [None, 1])
def test_rows_with_escapes_and_structure_in_strings_across_many_blocks(tmp_path, indent):
    """Strings holding quotes, brackets, a row's own text and escapes, in a response of
    several MB: every row still reads as json.loads reads it, at its position."""
    rng = random.Random(13)
    tricky = [
        'https://example.com/say"hi"', "https://example.com/a]}]", "https://example.com/b\\",
        'https://example.com/x"},{"dimensionValues":[{"value":"2025031100"}]',
        "https://example.com/caf\u00e9/\u2603", "https://example.com/c/d\\\\\"}]}]",
    ]  # fmt: skip
    rows = []
    for n in range(24_000):
        url = tricky[n % len(tricky)] + f"/{n}" if n % 97 == 0 else f"https://example.com/p/{n}"
        rows.append(random_row(rng, f"202503{11 + n % 5}{n % 24:02d}", url))
    result = ingest(write(tmp_path / "tricky.json", [response(rows)], "single", indent))
    assert os.path.getsize(tmp_path / "tricky.json") > 3 << 20
    assert result.status == "loaded", result.message
    assert raw_rows(result.batch_id) == {
        n: expected_record(row, "UTC") for n, row in enumerate(rows, start=1)
    }


# ------------------------------------------------------------------ format detection


@pytest.mark.parametrize(
    ("layout", "indent", "compress"),
    [("single", 2, False), ("array", None, False), ("ndjson", None, True)],
)  # fmt: skip
def test_a_ga4_response_without_format_is_detected_and_read_as_ga4(
    tmp_path, layout, indent, compress
):
    rng = random.Random(21)
    count = 1 if layout == "single" else 2
    built = [rows_over(rng, ["2025031105", "2025031106"], 3) for _ in range(count)]
    path = write(tmp_path / "report.json", [response(rows) for rows in built], layout, indent,
                 compress)  # fmt: skip
    result = ingest_file(path)
    assert result.status == "loaded" and result.source == "ga", result.message
    assert result.file_format == "ga4"
    flat = [row for rows in built for row in rows]
    assert raw_rows(result.batch_id) == {
        position: expected_record(row, "UTC") for position, row in enumerate(flat, start=1)
    }
    assert rejects(result.batch_id) == {}


def test_a_ga4_response_larger_than_a_record_is_detected_from_the_head_of_the_file(
    tmp_path, settings
):
    settings.METRIFLOW_INGEST_MAX_RECORD_BYTES = 4096
    rows = rows_over(random.Random(22), [f"20250311{h:02d}" for h in range(24)], 10)
    path = write(tmp_path / "big.json", [response(rows)], "single", 2)
    assert os.path.getsize(path) > 4096
    result = ingest_file(path)
    assert result.status == "loaded" and result.file_format == "ga4", result.message
    assert raw_rows(result.batch_id) == {
        position: expected_record(row, "UTC") for position, row in enumerate(rows, start=1)
    }


def test_a_ga4_response_with_a_contradicting_source_is_refused_naming_the_format(
    tmp_path, test_database_env
):
    path = write(tmp_path / "report.json", [response(rows_over(random.Random(23), ["2025031100"],
                                                                 2))])  # fmt: skip
    refused = run_manage("ingest", "--source", "psi", path, env=test_database_env, check=False)
    assert refused.returncode != 0
    assert "this looks like a GA4 runReport response" in refused.stderr
    assert "use --format ga4" in refused.stderr
    assert query("SELECT count(*) FROM ingest_batch") == [(0,)]


def test_an_explicit_format_is_not_overridden_by_detection(tmp_path):
    path = write(tmp_path / "ga_report.json", [response(rows_over(random.Random(24),
                                                                  ["2025031100"], 2))])  # fmt: skip
    result = ingest_file(path, file_format="seed")
    assert result.file_format == "seed" and result.status == "failed"
    assert query("SELECT count(*) FROM raw_ga") == [(0,)]
