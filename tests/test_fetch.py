"""``manage.py fetch ga4|psi`` against a local server of the Google endpoints
(tests/google_api.py: real sockets, responses of the real shapes). Paging, 429s and
5xx with their retries, the service account's signed JWT, a URL that fails for
good; then the fetched file ingested and the raw rows compared with what the server
served, mapped here independently (zoneinfo for dateHour, the contract's canonical
page). No request leaves 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import zoneinfo

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from pipeline.fetch import ga4
from pipeline.fetch.http import Client, FetchError, RetryPolicy

from .contract import canonical
from .google_api import GA4_SCOPE, TOKEN_AUDIENCE, Fault, GoogleApi, Server

UTC = dt.UTC
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
PAGES = (
    "https://www.northwind-outdoors.example.com/",
    "https://www.northwind-outdoors.example.com/pricing",
    "https://Shop.Bluefin-Coffee.example.com/products/espresso-1?utm_source=news",
    "https://shop.bluefin-coffee.example.com/about/",
    "https://shop.bluefin-coffee.example.com/blog/post-3",
)


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@pytest.fixture
def google():
    server = Server(GoogleApi())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fast_retries(settings):
    """Retries without long waits (the waits are the policy's, not the test's)."""
    settings.METRIFLOW_FETCH_BACKOFF_SECONDS = 0.01
    settings.METRIFLOW_FETCH_BACKOFF_MAX_SECONDS = 0.05
    settings.METRIFLOW_FETCH_ATTEMPTS = 4
    settings.METRIFLOW_PIPELINE_TRIGGER = False
    return settings


def ga4_report(api: GoogleApi, rows: int, seed: int = 7) -> None:
    """``rows`` rows of traffic per page and New York hour (January: no clock change)."""
    rng = random.Random(seed)
    api.ga4_headers = {
        "dimensionHeaders": [{"name": "dateHour"}, {"name": "pageLocation"}],
        "metricHeaders": [
            {"name": "activeUsers", "type": "TYPE_INTEGER"},
            {"name": "sessions", "type": "TYPE_INTEGER"},
            {"name": "screenPageViews", "type": "TYPE_INTEGER"},
            {"name": "userEngagementDuration", "type": "TYPE_SECONDS"},
            {"name": "engagedSessions", "type": "TYPE_INTEGER"},
        ],
        "metadata": {"currencyCode": "USD", "timeZone": "America/New_York"},
    }
    first = dt.datetime(2024, 1, 15, 22)
    api.ga4_rows = []
    for i in range(rows):
        local = first + dt.timedelta(hours=i // len(PAGES))
        users = rng.randint(0, 40)
        sessions = users + rng.randint(0, 5)
        views = sessions + rng.randint(0, 20)
        engaged = rng.randint(0, sessions)
        api.ga4_rows.append(
            {
                "dimensionValues": [
                    {"value": local.strftime("%Y%m%d%H")},
                    {"value": PAGES[i % len(PAGES)]},
                ],
                "metricValues": [
                    {"value": str(users)},
                    {"value": str(sessions)},
                    {"value": str(views)},
                    {"value": str(rng.randint(0, 3000))},
                    {"value": str(engaged)},
                ],
            }
        )


def expected_ga(api: GoogleApi) -> set[tuple]:
    """The contract's GA records of the served rows, mapped here."""
    out = set()
    for row in api.ga4_rows:
        date_hour, page = (d["value"] for d in row["dimensionValues"])
        users, sessions, views, seconds, engaged = (int(m["value"]) for m in row["metricValues"])
        local = dt.datetime.strptime(date_hour, "%Y%m%d%H").replace(tzinfo=NEW_YORK)
        hour = local.astimezone(UTC)
        out.add((canonical(page), hour, users, sessions, views, sessions - engaged, seconds))
    return out


def write_credentials(api: GoogleApi, tmp_path) -> str:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(api.service_account_info()))
    return str(path)


def report_calls(api: GoogleApi) -> list:
    return [r for r in api.requests if r.path.endswith(":runReport")]


@pytest.mark.usefixtures("pipeline_db")
def test_ga4_pages_retries_signs_and_ingests(google, fast_retries, tmp_path):
    api = google.api
    ga4_report(api, rows=23)
    # Page 2 first gets a 429 (Retry-After: 0), page 3 a 500: each is retried.
    api.ga4_faults = []
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    calls: list[int] = []
    original = api.run_report

    def scripted(property_id, headers, body):
        calls.append(int(body["offset"]))
        if len(calls) == 2:
            return (
                429,
                {"Retry-After": "0"},
                {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}},
            )
        if len(calls) == 4:
            return 500, {}, {"error": {"code": 500, "status": "INTERNAL", "message": "backend"}}
        return original(property_id, headers, body)

    api.run_report = scripted
    out = tmp_path / "ga4-report.ndjson"
    call_command(
        "fetch", "ga4", "--property", api.property_id, "--from", "2024-01-15",
        "--to", "2024-01-16", "--credentials", write_credentials(api, tmp_path),
        "--page-size", "10", "--output", str(out),
    )  # fmt: skip

    # Paging: offsets 0, 10 (429), 10, 20 (500), 20; every call asked the same report.
    assert calls == [0, 10, 10, 20, 20]
    bodies = [r.body for r in report_calls(api)]
    assert {b["limit"] for b in bodies} == {10}
    assert bodies[0]["dateRanges"] == [{"startDate": "2024-01-15", "endDate": "2024-01-16"}]
    assert [d["name"] for d in bodies[0]["dimensions"]] == ["dateHour", "pageLocation"]
    assert [m["name"] for m in bodies[0]["metrics"]] == list(ga4.METRICS)
    # The token: a JWT signed by the key of the service account, for the GA4 scope.
    [claims] = api.assertions
    assert claims["iss"] == api.client_email
    assert claims["scope"] == GA4_SCOPE
    assert claims["aud"] == TOKEN_AUDIENCE
    assert {r.headers["authorization"] for r in report_calls(api)} == {f"Bearer {api.tokens[0]}"}
    # The file: the three pages as served, one per line.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(page["rows"]) for page in lines] == [10, 10, 3]
    assert [row for page in lines for row in page["rows"]] == api.ga4_rows
    assert {page["rowCount"] for page in lines} == {23}

    # Ingested: the raw rows are the served rows mapped by the contract.
    got = query(
        "SELECT p.url, r.hour, r.users, r.sessions, r.views, r.bounces, r.engagement_seconds "
        "FROM raw_ga r JOIN page p ON p.id = r.page_id"
    )
    assert len(got) == 23
    assert set(got) == expected_ga(api)


@pytest.mark.usefixtures("pipeline_db")
def test_ga4_host_name_and_page_path(google, fast_retries, tmp_path):
    """--host-path asks for hostName + pagePath; the page is https://host + path."""
    api = google.api
    ga4_report(api, rows=15, seed=3)
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    out = tmp_path / "ga4.ndjson"
    call_command(
        "fetch", "ga4", "--property", api.property_id, "--from", "2024-01-15",
        "--to", "2024-01-16", "--credentials", write_credentials(api, tmp_path),
        "--host-path", "--output", str(out),
    )  # fmt: skip
    [call] = report_calls(api)
    assert [d["name"] for d in call.body["dimensions"]] == ["dateHour", "hostName", "pagePath"]
    [page] = [json.loads(line) for line in out.read_text().splitlines()]
    assert {tuple(v["value"] for v in r["dimensionValues"])[1] for r in page["rows"]} == {
        "www.northwind-outdoors.example.com",
        "shop.bluefin-coffee.example.com",
    }
    got = query(
        "SELECT p.url, r.hour, r.users, r.sessions, r.views, r.bounces, r.engagement_seconds "
        "FROM raw_ga r JOIN page p ON p.id = r.page_id"
    )
    assert len(got) == 15
    assert set(got) == expected_ga(api)  # the five pages differ by host and path alone


def test_ga4_empty_report_writes_its_response_and_ingests_nothing(google, fast_retries, tmp_path):
    api = google.api
    ga4_report(api, rows=5)
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    out = tmp_path / "ga4.ndjson"
    stdout = io.StringIO()
    call_command(
        "fetch", "ga4", "--property", api.property_id, "--from", "2023-06-01",
        "--to", "2023-06-30", "--credentials", write_credentials(api, tmp_path),
        "--output", str(out), stdout=stdout,
    )  # fmt: skip
    assert "1 page(s), 0 rows of 0; no traffic in the range, nothing to ingest" in stdout.getvalue()
    [page] = [json.loads(line) for line in out.read_text().splitlines()]
    assert "rows" not in page and page["kind"] == "analyticsData#runReport"


def test_ga4_gives_up_after_the_attempts_and_leaves_no_file(google, fast_retries, tmp_path):
    api = google.api
    ga4_report(api, rows=5)
    api.ga4_faults = [Fault(503) for _ in range(10)]
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    out = tmp_path / "ga4.ndjson"
    with pytest.raises(CommandError, match=r"HTTP 503.*gave up after 4 attempts"):
        call_command(
            "fetch", "ga4", "--property", api.property_id, "--from", "2024-01-15",
            "--to", "2024-01-15", "--credentials", write_credentials(api, tmp_path),
            "--output", str(out),
        )  # fmt: skip
    assert len(report_calls(api)) == 4
    assert not out.exists() and not (tmp_path / "ga4.ndjson.part").exists()


def test_ga4_client_error_is_not_retried(google, fast_retries, tmp_path):
    api = google.api
    ga4_report(api, rows=5)
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    with pytest.raises(CommandError, match="HTTP 403 PERMISSION_DENIED: User does not have"):
        call_command(
            "fetch", "ga4", "--property", "42", "--from", "2024-01-15", "--to", "2024-01-15",
            "--credentials", write_credentials(api, tmp_path),
            "--output", str(tmp_path / "x.ndjson"),
        )  # fmt: skip
    assert len(report_calls(api)) == 1


def test_ga4_stops_at_the_page_bound(google, fast_retries, tmp_path):
    api = google.api
    ga4_report(api, rows=12)
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    fast_retries.METRIFLOW_GA4_MAX_PAGES = 2
    with pytest.raises(CommandError, match="more than 2 pages of 5"):
        call_command(
            "fetch", "ga4", "--property", api.property_id, "--from", "2024-01-15",
            "--to", "2024-01-16", "--credentials", write_credentials(api, tmp_path),
            "--page-size", "5", "--output", str(tmp_path / "x.ndjson"),
        )  # fmt: skip
    assert [r.body["offset"] for r in report_calls(api)] == [0, 5]


def test_a_bad_signature_gets_no_token(google, fast_retries, tmp_path):
    """The token endpoint really checks the signature: another key is refused."""
    api = google.api
    ga4_report(api, rows=3)
    fast_retries.METRIFLOW_GA4_API_URL = google.url
    impostor = GoogleApi(client_email=api.client_email)
    impostor.base_url = google.url
    path = tmp_path / "other.json"
    path.write_text(json.dumps(impostor.service_account_info()))
    with pytest.raises(CommandError, match="invalid_grant"):
        call_command(
            "fetch", "ga4", "--property", api.property_id, "--from", "2024-01-15",
            "--to", "2024-01-15", "--credentials", str(path),
            "--output", str(tmp_path / "x.ndjson"),
        )  # fmt: skip
    assert api.tokens == [] and report_calls(api) == []


def test_retry_after_is_honoured_and_backoff_is_bounded(google):
    """The waits asked of ``sleep``: at least Retry-After, else within the jitter cap."""
    api = google.api
    api.psi[("https://a.example.com/", "mobile")] = {"id": "https://a.example.com/"}
    api.psi_faults["https://a.example.com/"] = [
        Fault(429, retry_after="7"),
        Fault(502),
        Fault(503),
    ]
    waits: list[float] = []
    policy = RetryPolicy(attempts=5, base_seconds=2.0, max_seconds=3.0, max_retry_after=60)
    client = Client(policy=policy, sleep=waits.append, rng=random.Random(3))
    body = client.request_json(
        "GET",
        f"{google.url}/pagespeedonline/v5/runPagespeed",
        params={"url": "https://a.example.com/", "strategy": "mobile"},
    )
    assert body == {"id": "https://a.example.com/"}
    assert len(waits) == 3
    assert waits[0] >= 7
    assert 0 <= waits[1] <= 2.0 * 2  # retry 2: cap min(3, 2 x 2)
    assert 0 <= waits[2] <= 3.0
    # A Retry-After beyond the bound ends the call at once.
    api.psi_faults["https://a.example.com/"] = [Fault(429, retry_after="3600")]
    with pytest.raises(FetchError, match="Retry-After 3600 s is more than 60 s"):
        client.request_json(
            "GET",
            f"{google.url}/pagespeedonline/v5/runPagespeed",
            params={"url": "https://a.example.com/", "strategy": "mobile"},
        )
    assert len(waits) == 3


def test_response_bytes_are_bounded(google):
    api = google.api
    api.psi[("https://a.example.com/", "mobile")] = {"id": "x" * 5000}
    client = Client(max_response_bytes=4096, sleep=lambda _s: None)
    with pytest.raises(FetchError, match="response larger than 4,096 bytes"):
        client.request_json(
            "GET",
            f"{google.url}/pagespeedonline/v5/runPagespeed",
            params={"url": "https://a.example.com/", "strategy": "mobile"},
        )


def test_a_dropped_connection_is_retried_and_the_key_never_shows():
    """Nothing listens on the port: each attempt fails to connect; the message that ends
    the call names the failure without the API key of the URL."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: connections are refused
    waits: list[float] = []
    client = Client(policy=RetryPolicy(attempts=3, base_seconds=0.5), sleep=waits.append)
    with pytest.raises(FetchError, match="gave up after 3 attempts") as caught:
        client.request_json(
            "GET",
            f"http://127.0.0.1:{port}/pagespeedonline/v5/runPagespeed",
            params={"url": "https://a.example.com/", "key": "SECRET-KEY-123"},
        )
    assert "ConnectionError" in str(caught.value)
    assert "SECRET-KEY-123" not in str(caught.value)
    assert len(waits) == 2


def psi_response(url: str, strategy: str, rng: random.Random) -> dict:
    """A PageSpeed v5 response in its real shape (trimmed of most audits)."""
    fetch_time = dt.datetime(2024, 1, 15, 10, rng.randint(0, 59), rng.randint(0, 59), tzinfo=UTC)

    def audit(name: str, low: float, high: float, unit: str = "millisecond") -> dict:
        return {"id": name, "numericValue": rng.uniform(low, high), "numericUnit": unit}

    audits = {
        "first-contentful-paint": audit("first-contentful-paint", 400, 3000),
        "largest-contentful-paint": audit("largest-contentful-paint", 900, 6000),
        "server-response-time": audit("server-response-time", 50, 900),
        "cumulative-layout-shift": audit("cumulative-layout-shift", 0, 0.4, "unitless"),
        "interaction-to-next-paint": audit("interaction-to-next-paint", 40, 600),
    }
    return {
        "captchaResult": "CAPTCHA_NOT_NEEDED",
        "kind": "pagespeedonline#result",
        "id": url,
        "loadingExperience": {"id": url, "metrics": {}, "overall_category": "AVERAGE"},
        "lighthouseResult": {
            "requestedUrl": url,
            "finalUrl": url,
            "mainDocumentUrl": url,
            "lighthouseVersion": "12.2.1",
            "fetchTime": fetch_time.isoformat().replace("+00:00", ".000Z"),
            "configSettings": {"emulatedFormFactor": strategy, "formFactor": strategy,
                               "locale": "en-US", "onlyCategories": ["performance"]},
            "categories": {"performance": {"id": "performance", "title": "Performance",
                                           "score": rng.randint(20, 100) / 100}},
            "audits": audits,
        },
        "analysisUTCTimestamp": fetch_time.isoformat().replace("+00:00", ".123Z"),
    }  # fmt: skip


def expected_psi(api: GoogleApi, urls) -> set[tuple]:
    out = set()
    for (url, strategy), response in api.psi.items():
        if url not in urls:
            continue
        lh = response["lighthouseResult"]
        audit = {k: v["numericValue"] for k, v in lh["audits"].items()}
        measured = dt.datetime.fromisoformat(lh["fetchTime"].replace("Z", "+00:00"))
        out.add(
            (
                canonical(lh["finalUrl"]),
                measured,
                strategy,
                round(lh["categories"]["performance"]["score"] * 100, 6),
                round(audit["largest-contentful-paint"], 6),
                round(audit["first-contentful-paint"], 6),
                round(audit["interaction-to-next-paint"], 6),
                round(audit["server-response-time"], 6),
                round(audit["cumulative-layout-shift"], 6),
            )
        )
    return out


@pytest.mark.usefixtures("pipeline_db")
def test_psi_backs_off_records_a_failure_and_ingests_the_rest(google, fast_retries, tmp_path):
    api = google.api
    rng = random.Random(11)
    urls = [
        "https://www.northwind-outdoors.example.com/",
        "https://www.northwind-outdoors.example.com/pricing",
        "https://shop.bluefin-coffee.example.com/blog/post-3",
    ]
    for url in urls:
        for strategy in ("mobile", "desktop"):
            api.psi[(url, strategy)] = psi_response(url, strategy, rng)
    api.psi_faults[urls[0]] = [Fault(429, retry_after="0")]
    broken = "https://broken.example.com/checkout"
    api.psi_always_fail[broken] = Fault(
        500,
        body={"error": {"code": 500, "message": "Lighthouse returned error: NO_FCP",
                        "status": "INTERNAL"}},
    )  # fmt: skip
    fast_retries.METRIFLOW_PSI_API_URL = google.url
    out = tmp_path / "psi-runs.ndjson"
    with pytest.raises(CommandError, match="2 of 8 runs failed"):
        call_command(
            "fetch", "psi", "--url", *urls[:2], broken, urls[2], "--strategy", "mobile,desktop",
            "--key", "test-key", "--concurrency", "2", "--output", str(out),
        )  # fmt: skip

    calls = [r for r in api.requests if r.path.endswith("runPagespeed")]
    # 6 good runs + 1 retry after the 429 + 4 attempts for each of the broken URL's two.
    assert len(calls) == 6 + 1 + 2 * 4
    assert api.max_in_flight <= 2
    assert {r.query["category"][0] for r in calls} == {"performance"}
    assert {r.query["key"][0] for r in calls} == {"test-key"}
    # The file: one line per run in request order; the failed runs keep their message.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 8
    assert [ln.get("id") for ln in lines] == [
        u for u in (*urls[:2], broken, urls[2]) for _ in (0, 1)
    ]
    failed = [ln for ln in lines if "error" in ln]
    assert [ln["id"] for ln in failed] == [broken, broken]
    assert all("NO_FCP" in ln["error"]["message"] for ln in failed)

    got = query(
        "SELECT p.url, r.measured_at, r.strategy, round(r.performance_score::numeric, 6)::float8,"
        " round(r.lcp_ms::numeric, 6)::float8, round(r.fcp_ms::numeric, 6)::float8,"
        " round(r.inp_ms::numeric, 6)::float8, round(r.ttfb_ms::numeric, 6)::float8,"
        " round(r.cls::numeric, 6)::float8 FROM raw_psi r JOIN page p ON p.id = r.page_id"
    )
    assert len(got) == 6
    assert set(got) == expected_psi(api, urls)
    [(rejected,)] = query("SELECT records_rejected FROM ingest_batch WHERE source = 'psi'")
    assert rejected == 2


def test_psi_arguments_are_checked(google, fast_retries):
    fast_retries.METRIFLOW_PSI_API_URL = google.url
    with pytest.raises(CommandError, match="not an absolute http"):
        call_command("fetch", "psi", "--url", "ftp://x.example.com/", "--no-ingest")
    with pytest.raises(CommandError, match="subset of mobile,desktop"):
        call_command("fetch", "psi", "--url", "https://x.example.com/", "--strategy", "tablet")
    fast_retries.METRIFLOW_PSI_MAX_URLS = 2
    with pytest.raises(CommandError, match="3 URLs, more than the limit of 2"):
        call_command(
            "fetch", "psi", "--url", "https://a.example.com/", "https://b.example.com/",
            "https://c.example.com/", "--no-ingest",
        )  # fmt: skip
    assert google.api.requests == []
