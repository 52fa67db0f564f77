"""Files of GA4 and PSI v5 responses of the real shapes, written streaming (benchmarks, tests).

The responses follow Google's published shapes: a GA4 ``runReport`` response
has its headers, then ``rows``, then ``rowCount``, ``metadata`` and ``kind``
(the time zone comes after the rows, as the API writes it); a PSI v5 response
holds a ``lighthouseResult`` with the audits Lighthouse returns, their
``details`` and a screenshot, so that it weighs what a real one does
(``response_bytes``, 0.3-1 MB for real ones).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

GA4_DIMENSIONS = ("dateHour", "pageLocation")
GA4_METRICS = (
    ("activeUsers", "TYPE_INTEGER"),
    ("sessions", "TYPE_INTEGER"),
    ("screenPageViews", "TYPE_INTEGER"),
    ("userEngagementDuration", "TYPE_SECONDS"),
    ("engagedSessions", "TYPE_INTEGER"),
)
LIGHTHOUSE_AUDITS = (
    "first-contentful-paint", "largest-contentful-paint", "speed-index", "total-blocking-time",
    "cumulative-layout-shift", "server-response-time", "interactive", "max-potential-fid",
    "render-blocking-resources", "unused-css-rules", "unused-javascript", "modern-image-formats",
    "uses-optimized-images", "uses-text-compression", "uses-responsive-images", "redirects",
    "efficient-animated-content", "duplicated-javascript", "legacy-javascript", "dom-size",
    "bootup-time", "mainthread-work-breakdown", "font-display", "third-party-summary",
    "network-requests", "network-rtt", "network-server-latency", "main-thread-tasks",
    "diagnostics", "metrics", "screenshot-thumbnails", "final-screenshot", "resource-summary",
    "largest-contentful-paint-element", "layout-shifts", "long-tasks", "uses-long-cache-ttl",
    "total-byte-weight", "critical-request-chains", "user-timings", "viewport",
)  # fmt: skip


def ga4_rows(rng: random.Random, hours: list[str], pages: int, count: int) -> Iterator[dict]:
    """``count`` rows over ``hours`` (dateHour texts) and ``pages`` pages, each key once."""
    for n in range(count):
        hour = hours[n // pages % len(hours)]
        sessions = rng.randint(0, 500)
        yield {
            "dimensionValues": [
                {"value": hour},
                {"value": f"https://www.example.com/p/{n % pages}?utm_source=x"},
            ],
            "metricValues": [
                {"value": str(rng.randint(0, sessions))},
                {"value": str(sessions)},
                {"value": str(sessions + rng.randint(0, 900))},
                {"value": str(rng.randint(0, 40_000))},
                {"value": str(rng.randint(0, sessions))},
            ],
        }


def local_hours(zone: str, start: datetime, count: int) -> list[str]:
    """``count`` consecutive dateHour texts in ``zone`` from the UTC hour ``start``.

    A repeated local hour appears once, as GA4 reports it.
    """
    seen: list[str] = []
    at = start
    while len(seen) < count:
        text = at.astimezone(ZoneInfo(zone)).strftime("%Y%m%d%H")
        if not seen or seen[-1] != text:
            seen.append(text)
        at += timedelta(hours=1)
    return seen


def write_ga4(
    path: str,
    *,
    responses: int,
    rows: int,
    pages: int = 1000,
    zone: str = "America/New_York",
    layout: str = "array",
    seed: int = 0,
) -> int:
    """Writes ``responses`` runReport responses of ``rows`` rows each; returns the rows."""
    rng = random.Random(seed)
    hours_each = max(1, -(-rows // pages))
    start = datetime(2025, 3, 1, tzinfo=UTC)
    header = {
        "dimensionHeaders": [{"name": name} for name in GA4_DIMENSIONS],
        "metricHeaders": [{"name": name, "type": kind} for name, kind in GA4_METRICS],
    }
    with open(path, "wb") as out:
        if layout == "array":
            out.write(b"[\n")
        for number in range(responses):
            hours = local_hours(zone, start + timedelta(hours=number * hours_each), hours_each)
            out.write(orjson.dumps(header)[:-1] + b',"rows":[')
            for n, row in enumerate(ga4_rows(rng, hours, pages, rows)):
                out.write((b"," if n else b"") + orjson.dumps(row))
            tail = {
                "rowCount": rows,
                "metadata": {"currencyCode": "USD", "timeZone": zone},
                "kind": "analyticsData#runReport",
            }
            out.write(b"]," + orjson.dumps(tail)[1:])
            if layout == "array":
                out.write(b",\n" if number < responses - 1 else b"\n]\n")
            else:
                out.write(b"\n")
    return responses * rows


def psi_response(
    rng: random.Random, url: str, at: datetime, strategy: str, response_bytes: int
) -> dict:
    """A PSI v5 response of about ``response_bytes`` bytes, as indented JSON."""
    numeric = {
        "first-contentful-paint": rng.uniform(300, 5000),
        "largest-contentful-paint": rng.uniform(500, 9000),
        "server-response-time": rng.uniform(20, 3000),
        "cumulative-layout-shift": rng.uniform(0, 0.6),
    }
    audits = {}
    for audit in LIGHTHOUSE_AUDITS:
        entry = {
            "id": audit,
            "title": audit.replace("-", " ").capitalize(),
            "description": f"Lighthouse audit {audit}. [Learn more](https://developer.chrome.com/)",
            "score": round(rng.random(), 2),
            "scoreDisplayMode": "numeric",
        }
        if audit in numeric:
            entry["numericValue"] = numeric[audit]
            entry["numericUnit"] = "unitless" if audit.startswith("cumulative") else "millisecond"
            entry["displayValue"] = f"{numeric[audit]:.1f}"
        audits[audit] = entry
    response = {
        "captchaResult": "CAPTCHA_NOT_NEEDED",
        "kind": "pagespeedonline#result",
        "id": url,
        "loadingExperience": {"initial_url": url},
        "lighthouseResult": {
            "requestedUrl": url,
            "finalUrl": url,
            "mainDocumentUrl": url,
            "finalDisplayedUrl": url,
            "lighthouseVersion": "12.6.0",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/137.0.0.0",
            "fetchTime": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "environment": {"networkUserAgent": "Mozilla/5.0", "benchmarkIndex": 1200},
            "runWarnings": [],
            "configSettings": {"emulatedFormFactor": strategy, "formFactor": strategy,
                               "locale": "en-US", "onlyCategories": ["performance"]},
            "audits": audits,
            "categories": {"performance": {"id": "performance", "title": "Performance",
                                           "score": round(rng.random(), 2)}},
            "timing": {"total": rng.uniform(5000, 20000)},
        },
        "analysisUTCTimestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }  # fmt: skip
    size = len(orjson.dumps(response, option=orjson.OPT_INDENT_2))
    items = []
    while size < response_bytes:
        item = {
            "url": f"https://cdn.example.com/static/{rng.getrandbits(64):x}.js",
            "transferSize": rng.randint(100, 900_000),
            "resourceSize": rng.randint(100, 3_000_000),
            "startTime": rng.uniform(0, 9000),
            "endTime": rng.uniform(0, 9000),
            "mimeType": "application/javascript",
            "resourceType": "Script",
        }
        items.append(item)
        size += 230
    audits["network-requests"]["details"] = {"type": "table", "items": items[: len(items) // 2]}
    image = base64.b64encode(rng.randbytes(max(0, (response_bytes - size) // 2))).decode()
    audits["final-screenshot"]["details"] = {
        "type": "screenshot",
        "data": "data:image/webp;base64," + image,
    }
    rest = items[len(items) // 2 :]
    audits["unused-javascript"]["details"] = {"type": "opportunity", "items": rest}
    return response


def write_psi(
    path: str,
    *,
    responses: int,
    response_bytes: int = 500_000,
    pages: int = 200,
    layout: str = "array",
    seed: int = 0,
) -> None:
    """Writes ``responses`` PSI v5 responses, each indented as the API sends it."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    option = orjson.OPT_INDENT_2 if layout == "array" else 0
    with open(path, "wb") as out:
        if layout == "array":
            out.write(b"[\n")
        for n in range(responses):
            strategy = "mobile" if n % 2 else "desktop"
            at = start + timedelta(minutes=7 * n, microseconds=rng.randint(0, 999_999))
            body = psi_response(
                rng, f"https://www.example.com/p/{n % pages}", at, strategy, response_bytes
            )
            out.write(orjson.dumps(body, option=option))
            if layout == "array":
                out.write(b",\n" if n < responses - 1 else b"\n]\n")
            else:
                out.write(b"\n")
