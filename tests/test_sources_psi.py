"""``ingest --format psi``: PageSpeed Insights v5 responses against an independent reading,
and both Google formats end to end against the same records in the contract format."""

from __future__ import annotations

import gzip
import json
import os
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from pipeline import stages
from pipeline.ingest import ingest_file, ingest_files

from .conftest import reset_pipeline_tables, run_manage
from .contract import canonical, generate, hour_of, parse_iso
from .test_sources_ga4 import api, expected_record, peak_rss_of_ingest, random_row
from .test_sources_ga4 import response as ga4_response

__all__ = ["api"]
pytestmark = pytest.mark.usefixtures("pipeline_db")
AUDITS = {
    "lcp_ms": "largest-contentful-paint",
    "fcp_ms": "first-contentful-paint",
    "ttfb_ms": "server-response-time",
    "cls": "cumulative-layout-shift",
    "inp_ms": "interaction-to-next-paint",
}


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def psi(rng: random.Random, url: str, at: datetime, strategy: str, *, inp=True, pad=0) -> dict:
    """A PSI v5 response with the fields Metriflow reads among some it does not."""
    audits = {
        audit: {"id": audit, "score": 0.5, "numericValue": rng.uniform(0, 6000),
                "details": {"type": "table", "items": [{"url": url, "wastedMs": 12}] * pad}}
        for key, audit in AUDITS.items() if inp or key != "inp_ms"
    }  # fmt: skip
    audits["cumulative-layout-shift"]["numericValue"] = rng.uniform(0, 0.5)
    audits["speed-index"] = {"id": "speed-index", "numericValue": 1234.5}
    return {
        "captchaResult": "CAPTCHA_NOT_NEEDED",
        "kind": "pagespeedonline#result",
        "id": url + "?from=id",
        "loadingExperience": {"metrics": {"LARGEST_CONTENTFUL_PAINT_MS": {"percentile": 1}}},
        "lighthouseResult": {
            "requestedUrl": url + "?requested",
            "finalUrl": url,
            "fetchTime": stamp(at),
            "configSettings": {"formFactor": strategy, "locale": "en-US"},
            "categories": {"performance": {"score": rng.randint(0, 100) / 100}},
            "audits": audits,
            "i18n": {"rendererFormattedStrings": {"varianceDisclaimer": "x" * 200}},
        },
        "analysisUTCTimestamp": stamp(at + timedelta(minutes=3)),
    }  # fmt: skip


def expected(body: dict) -> tuple:
    """(url, measured_at, strategy, score, lcp, fcp, inp, ttfb, cls), read independently."""
    result = body["lighthouseResult"]
    url = result.get("finalUrl") or result.get("requestedUrl") or body["id"]
    at = parse_iso(result.get("fetchTime") or body["analysisUTCTimestamp"])
    audits = result["audits"]

    def vital(key):
        return audits[AUDITS[key]]["numericValue"] if AUDITS[key] in audits else None

    return (
        canonical(url), at, result["configSettings"]["formFactor"],
        result["categories"]["performance"]["score"] * 100, vital("lcp_ms"), vital("fcp_ms"),
        vital("inp_ms"), vital("ttfb_ms"), vital("cls"),
    )  # fmt: skip


def write(path, bodies, layout="array", indent=2, compress=False) -> str:
    if layout == "single":
        (body,) = bodies
        text = json.dumps(body, indent=indent)
    elif layout == "array":
        text = json.dumps(bodies, indent=indent)
    else:
        text = "".join(json.dumps(b) + "\n" for b in bodies)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def raw_rows(batch_id: int) -> dict[int, tuple]:
    rows = query(
        "SELECT r.position, p.url, r.measured_at, r.strategy, r.performance_score, r.lcp_ms, "
        "r.fcp_ms, r.inp_ms, r.ttfb_ms, r.cls FROM raw_psi r JOIN page p ON p.id = r.page_id "
        "WHERE r.batch_id = %s",
        (batch_id,),
    )
    return {row[0]: row[1:] for row in rows}


def rejects(batch_id: int) -> dict[int, str]:
    return dict(query("SELECT position, reason FROM ingest_reject WHERE batch_id = %s",
                      (batch_id,)))  # fmt: skip


def bodies(count: int, seed: int = 1, **options) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 11, tzinfo=UTC)
    return [
        psi(rng, f"https://Shop.Example.com/p/{n % 5}/", start + timedelta(minutes=37 * n,
            microseconds=rng.randint(0, 999) * 1000), ("mobile", "desktop")[n % 2], **options)
        for n in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("layout", "indent", "compress"),
    [("single", 2, False), ("array", 2, False), ("array", None, False), ("ndjson", None, False),
     ("ndjson", None, True), ("array", 4, True)],
)  # fmt: skip
def test_responses_become_the_contract_records_whatever_the_layout(
    tmp_path, layout, indent, compress
):
    built = bodies(1 if layout == "single" else 12, pad=50)
    path = write(tmp_path / "runs.json", built, layout, indent, compress)
    result = ingest_file(path, file_format="psi")
    assert result.status == "loaded" and result.source == "psi", result.message
    assert raw_rows(result.batch_id) == {n: expected(b) for n, b in enumerate(built, start=1)}


def test_fallbacks_for_the_page_and_the_time_and_an_absent_inp(tmp_path):
    built = bodies(6, seed=2)
    del built[0]["lighthouseResult"]["finalUrl"]  # requestedUrl
    del built[1]["lighthouseResult"]["finalUrl"]
    del built[1]["lighthouseResult"]["requestedUrl"]  # id
    del built[2]["lighthouseResult"]["fetchTime"]  # analysisUTCTimestamp
    del built[3]["lighthouseResult"]["audits"]["interaction-to-next-paint"]  # inp null
    built[4]["lighthouseResult"]["audits"]["largest-contentful-paint"].pop("numericValue")
    result = ingest_file(write(tmp_path / "fallbacks.json", built), file_format="psi")
    got = raw_rows(result.batch_id)
    assert got[1][0] == canonical(built[0]["lighthouseResult"]["requestedUrl"])
    assert got[2][0] == canonical(built[1]["id"])
    assert got[3][1] == parse_iso(built[2]["analysisUTCTimestamp"])
    assert got[4][6] is None and got[5][4] is None
    built[4]["lighthouseResult"]["audits"].pop("largest-contentful-paint")  # same as no value
    assert got == {n: expected(b) for n, b in enumerate(built, start=1)}


def test_errors_and_bad_responses_are_rejected_with_position_and_reason(tmp_path):
    built = bodies(9, seed=3)
    built[1]["lighthouseResult"]["runtimeError"] = {
        "code": "NO_FCP", "message": "The page did not paint any content.",
    }  # fmt: skip
    built[1]["lighthouseResult"]["categories"]["performance"]["score"] = None
    failed = "Lighthouse returned error: FAILED_DOCUMENT_REQUEST"
    built[3] = {"error": {"code": 500, "message": failed, "status": "INTERNAL"}}
    built[4]["lighthouseResult"]["configSettings"]["formFactor"] = "tablet"
    built[5]["lighthouseResult"]["categories"]["performance"]["score"] = None
    built[6]["lighthouseResult"]["fetchTime"] = "yesterday"
    built[7]["lighthouseResult"]["audits"]["first-contentful-paint"]["numericValue"] = -1
    result = ingest_file(write(tmp_path / "errors.json", built), file_format="psi")
    refused = rejects(result.batch_id)
    assert refused == {
        2: "Lighthouse runtimeError NO_FCP: The page did not paint any content.",
        4: "PSI error 500: Lighthouse returned error: FAILED_DOCUMENT_REQUEST",
        5: "strategy must be 'mobile' or 'desktop', got 'tablet'",
        6: "no score: lighthouseResult.categories.performance.score is absent or null",
        7: refused[7],
        8: "fcp_ms must be >= 0, got -1.0",
    }
    assert refused[7].startswith("measured_at: not an ISO-8601 timestamp")
    assert raw_rows(result.batch_id) == {n: expected(built[n - 1]) for n in (1, 3, 9)}


def test_a_response_longer_than_its_bound_is_rejected_and_skipped(tmp_path, settings):
    settings.METRIFLOW_INGEST_MAX_PSI_RESPONSE_BYTES = 60_000
    built = bodies(5, seed=4, pad=20)
    built[2] = psi(random.Random(5), "https://example.com/big", datetime(2025, 3, 12, tzinfo=UTC),
                   "mobile", pad=2_000)  # fmt: skip
    for layout, indent in (("array", 2), ("ndjson", None)):
        path = write(tmp_path / f"bound-{layout}.json", built, layout, indent)
        assert len(json.dumps(built[2], indent=indent)) > 60_000
        result = ingest_file(path, file_format="psi")
        assert rejects(result.batch_id) == {3: "response longer than 60,000 bytes"}
        assert raw_rows(result.batch_id) == {n: expected(built[n - 1]) for n in (1, 2, 4, 5)}


def test_a_file_that_breaks_off_keeps_the_responses_before(tmp_path, test_database_env):
    built = bodies(4, seed=6)
    text = json.dumps(built, indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: text.index(built[3]["lighthouseResult"]["fetchTime"])])
    done = run_manage("ingest", "--format", "psi", str(path), env=test_database_env, check=False)
    assert done.returncode != 0 and "at record 4" in done.stderr
    (batch_id,) = query("SELECT id FROM ingest_batch")[0]
    assert raw_rows(batch_id) == {n: expected(built[n - 1]) for n in (1, 2, 3)}


@pytest.mark.slow
def test_a_200_mb_file_of_real_sized_responses_streams_in_bounded_memory(
    tmp_path, test_database_env
):
    # PageSpeed v5 responses of 0.3-1 MB each, from the generator.
    generate(tmp_path, "--records", "340", "--sources", "psi", "--format", "psi")
    path = str(tmp_path / "psi-v5.json")
    assert os.path.getsize(path) > 200 << 20
    peak, out = peak_rss_of_ingest(path, "psi", test_database_env)
    assert "340 accepted, 0 rejected" in out
    assert peak < 200 << 20, f"peak RSS {peak / 2**20:.0f} MB"


# ------------------------------------------------------------------ end to end


def contract_ga(row: dict, zone: str) -> dict:
    _url, hour, users, sessions, views, bounces, engagement = expected_record(row, zone)
    return {"page": row["pageLocation"], "hour": hour.isoformat().replace("+00:00", "Z"),
            "users": users, "sessions": sessions, "views": views, "bounces": bounces,
            "engagement_seconds": engagement}  # fmt: skip


def contract_psi(body: dict) -> dict:
    url, at, strategy, score, lcp, fcp, inp, ttfb, cls = expected(body)
    return {"page": url, "measured_at": at.isoformat(), "strategy": strategy,
            "performance_score": score, "lcp_ms": lcp, "fcp_ms": fcp, "inp_ms": inp,
            "ttfb_ms": ttfb, "cls": cls}  # fmt: skip


def reports(api) -> dict:
    """Every report over the data's range, whole, with the run times left out."""
    answers = {}
    ranges = [("2025-03-08", "2025-03-16"), ("2025-03-09T05:00:00Z", "2025-03-11T17:00:00Z")]
    for start, end in ranges:
        params = {"from": start, "to": end}
        answers[("summary", start)] = api.get("/api/reports/summary", params).json()
        for granularity in ("hour", "interval", "day"):
            answers[(granularity, start)] = api.get(
                "/api/reports/timeseries", {**params, "granularity": granularity}
            ).json()
        pages = api.get("/api/reports/pages", {**params, "limit": 100}).json()
        answers[("pages", start)] = pages
    for answer in answers.values():
        assert answer["freshness"]["pending"] is False
        answer["freshness"].pop("pipeline_run_at")
    return answers


def test_ga4_and_psi_files_report_like_the_same_records_in_the_contract_format(tmp_path, api):
    rng = random.Random(12)
    zone = "America/New_York"  # the data crosses the spring-forward night of 2025-03-09
    start = datetime(2025, 3, 8, 12, tzinfo=UTC)
    hours = list(dict.fromkeys(  # dateHour texts; a repeated local hour once, as GA4 has it
        (start + timedelta(hours=n)).astimezone(ZoneInfo(zone)).strftime("%Y%m%d%H")
        for n in range(60)
    ))  # fmt: skip
    rows = [random_row(rng, hour, f"https://www.example.com/p/{n}?ref={n % 3}")
            for hour in hours for n in range(rng.randint(1, 6))]  # fmt: skip
    half = len(rows) // 2
    ga4_path = tmp_path / "report.json"
    ga4_path.write_text(json.dumps([ga4_response(rows[:half], zone=zone),
                                    ga4_response(rows[half:], zone=zone)], indent=2))  # fmt: skip
    runs = [
        psi(rng, f"https://www.example.com/p/{n % 6}", start + timedelta(minutes=41 * n),
            ("mobile", "desktop")[n % 3 == 0], inp=n % 4 != 0)
        for n in range(90)
    ]  # fmt: skip
    psi_path = tmp_path / "runs.ndjson"
    psi_path.write_text("".join(json.dumps(run) + "\n" for run in runs))

    (tmp_path / "ga.json").write_text(json.dumps([contract_ga(row, zone) for row in rows]))
    (tmp_path / "psi.json").write_text(json.dumps([contract_psi(run) for run in runs]))
    results = ingest_files([str(tmp_path / "ga.json"), str(tmp_path / "psi.json")], parallel=1,
                           show_progress=False)  # fmt: skip
    assert [(r.status, r.rejected) for r in results] == [("loaded", 0), ("loaded", 0)]
    stages.drain()
    from_contract = reports(api)

    reset_pipeline_tables()
    assert ingest_file(str(ga4_path), file_format="ga4").status == "loaded"
    assert ingest_file(str(psi_path), file_format="psi").status == "loaded"
    stages.drain()
    from_google = reports(api)

    assert from_google == from_contract
    summary = from_google[("summary", "2025-03-08")]
    assert summary["traffic"]["users"] == sum(int(row["activeUsers"]) for row in rows)
    assert summary["performance"]["both"]["samples"] == len(
        {(canonical(r["lighthouseResult"]["finalUrl"]), hour_of(parse_iso(
            r["lighthouseResult"]["fetchTime"])), r["lighthouseResult"]["configSettings"][
            "formFactor"]) for r in runs}
    )  # fmt: skip


# ------------------------------------------------------------------ format detection


@pytest.mark.parametrize(("layout", "compress"), [("single", False), ("array", False),
                                                  ("ndjson", True)])  # fmt: skip
def test_a_psi_v5_response_without_format_is_detected_and_read_as_psi(tmp_path, layout, compress):
    built = bodies(1 if layout == "single" else 6, seed=31)
    path = write(tmp_path / "runs.json", built, layout, 2 if layout != "ndjson" else None,
                 compress)  # fmt: skip
    result = ingest_file(path)
    assert result.status == "loaded" and result.source == "psi", result.message
    assert result.file_format == "psi"
    assert raw_rows(result.batch_id) == {n: expected(b) for n, b in enumerate(built, start=1)}
    assert rejects(result.batch_id) == {}


def test_a_psi_v5_response_given_as_ga_is_refused_naming_the_format(tmp_path, test_database_env):
    path = write(tmp_path / "runs.json", bodies(2, seed=32))
    refused = run_manage("ingest", "--source", "ga", path, env=test_database_env, check=False)
    assert refused.returncode != 0
    assert "this looks like a PageSpeed Insights v5 response" in refused.stderr
    assert "use --format psi" in refused.stderr
