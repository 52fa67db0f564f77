"""The Google formats: GA4 Data API ``runReport`` responses and PageSpeed Insights v5
responses, made from the contract records of the same seed.

Records are generated in the contract format first (so the values, faults and URL
spellings are those of ``--format contract`` with the same arguments) and each
chunk's lines are then turned into the Google shape:

- GA4: one row per record (``dateHour`` in ``--time-zone``, ``pageLocation`` as
  spelled), values as strings; ``engagedSessions = sessions - bounces``. Rows are
  grouped into responses of ``--ga4-page-rows`` rows, as the pages of one report
  (``rowCount`` is the file's total), each with ``dimensionHeaders``,
  ``metricHeaders``, ``metadata.timeZone`` and ``kind``.
- PSI: one response per record, of 0.3-1 MB like the real ones: the audits
  Lighthouse returns, by their real ids, with the bulk of their ``details``
  (network requests, screenshot thumbnails and the full-page screenshot as data
  URIs, main-thread tasks, treemap data...). Sizes and counts come from a CRC of
  the record's text, so the bytes depend only on the arguments.
"""

from __future__ import annotations

import datetime as dt
import zlib
import zoneinfo
from functools import lru_cache

import numpy as np
import orjson

from loadgen.sink import Sink

UTC = dt.UTC
GA4_METRICS = (
    ("activeUsers", "TYPE_INTEGER"),
    ("sessions", "TYPE_INTEGER"),
    ("screenPageViews", "TYPE_INTEGER"),
    ("userEngagementDuration", "TYPE_SECONDS"),
    ("engagedSessions", "TYPE_INTEGER"),
)


def local_hour_of(utc_hour: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The local hour (wall time) whose start, in UTC truncated to the hour, is ``utc_hour``.

    In a whole-hour zone that is the local time of ``utc_hour``; in a half-hour zone
    (Asia/Kolkata) the local hour starting inside ``utc_hour`` (at :30 UTC). Raises
    ValueError for an hour that has no local hour of its own: after a clock change back,
    two UTC hours share one local hour, which GA4 reports as one row.
    """
    local = utc_hour.astimezone(tz)
    wall = local.replace(minute=0, second=0, microsecond=0, tzinfo=None, fold=0)
    if local.minute or local.second:
        wall += dt.timedelta(hours=1)
    back = wall.replace(tzinfo=tz).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if back != utc_hour:
        raise ValueError(
            f"--time-zone {tz.key}: the UTC hour {utc_hour:%Y-%m-%dT%H:00Z} shares its local "
            f"hour {wall:%Y-%m-%d %H:00} with another (clock change); GA4 reports them as one "
            "row. Choose a range without a change back, or a zone without one."
        )
    return wall


def check_time_zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--time-zone {name!r} is not an IANA time zone") from None


class GA4Writer:
    """Contract GA lines in, ``runReport`` responses out (one per line or array item)."""

    def __init__(self, sink: Sink, time_zone: str, page_rows: int, total_rows: int) -> None:
        self.sink = sink
        self.tz = check_time_zone(time_zone)
        self.page_rows = page_rows
        self.total_rows = total_rows
        self.records = 0  # rows written
        self._rows: list[bytes] = []
        self._date_hour: dict[str, bytes] = {}
        headers = {
            "dimensionHeaders": [{"name": "dateHour"}, {"name": "pageLocation"}],
            "metricHeaders": [{"name": n, "type": t} for n, t in GA4_METRICS],
        }
        self._head = orjson.dumps(headers)[:-1] + b',"rows":['
        meta = {"currencyCode": "USD", "timeZone": self.tz.key}
        self._tail = (
            b'],"rowCount":%d,"metadata":' % total_rows
            + orjson.dumps(meta)
            + b',"kind":"analyticsData#runReport"}'
        )

    def date_hour(self, hour: str) -> bytes:
        value = self._date_hour.get(hour)
        if value is None:
            utc = dt.datetime.fromisoformat(hour.replace("Z", "+00:00")).astimezone(UTC)
            value = local_hour_of(utc, self.tz).strftime("%Y%m%d%H").encode()
            self._date_hour[hour] = value
        return value

    _ROW = (
        b'{"dimensionValues":[{"value":"%s"},{"value":%s}],"metricValues":[{"value":"%d"},'
        b'{"value":"%d"},{"value":"%d"},{"value":"%s"},{"value":"%d"}]}'
    )

    def write(self, lines: list[bytes]) -> None:
        rows = self._rows
        for line in lines:
            r = orjson.loads(line)
            rows.append(
                self._ROW
                % (
                    self.date_hour(r["hour"]),
                    orjson.dumps(r["page"]),
                    r["users"],
                    r["sessions"],
                    r["views"],
                    repr(float(r["engagement_seconds"])).encode(),
                    r["sessions"] - r["bounces"],
                )
            )
        self.records += len(lines)
        while len(rows) >= self.page_rows:
            self._emit(rows[: self.page_rows])
            del rows[: self.page_rows]

    def _emit(self, rows: list[bytes]) -> None:
        self.sink.write([self._head + b",".join(rows) + self._tail])

    def close(self) -> None:
        if self._rows:
            self._emit(self._rows)
            self._rows = []
        if self.records != self.total_rows:
            raise AssertionError(f"rowCount {self.total_rows} but {self.records} rows written")
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()


# --- PageSpeed Insights v5 -------------------------------------------------------------


@lru_cache(maxsize=1)
def _base64_blob() -> bytes:
    """1 MiB of base64 text (fixed), sliced for the screenshots' data URIs."""
    alphabet = np.frombuffer(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8
    )
    rng = np.random.Generator(np.random.PCG64(20240101))
    return alphabet[rng.integers(0, 64, 1 << 20)].tobytes()


def _data_uri(h: int, size: int) -> bytes:
    blob = _base64_blob()
    start = h % (len(blob) - size)
    return b'"data:image/webp;base64,' + blob[start : start + size] + b'"'


_RESOURCE_TYPES = (
    (b"Script", b"application/javascript", b"/static/js/chunk-%d.js"),
    (b"Stylesheet", b"text/css", b"/static/css/styles-%d.css"),
    (b"Image", b"image/webp", b"/media/images/photo-%d.webp"),
    (b"Font", b"font/woff2", b"/static/fonts/inter-%d.woff2"),
    (b"Fetch", b"application/json", b"/api/v2/content/%d"),
)
_THIRD_PARTIES = (
    b"https://www.googletagmanager.com/gtag/js?id=G-%d",
    b"https://fonts.gstatic.com/s/inter/v%d/font.woff2",
    b"https://cdn.jsdelivr.net/npm/package-%d/dist/index.min.js",
    b"https://connect.facebook.net/en_US/fbevents-%d.js",
)
_REQUEST = (
    b'{"url":"%s","sessionTargetType":"page","protocol":"h2","rendererStartTime":%d.%d,'
    b'"networkRequestTime":%d.%d,"networkEndTime":%d.%d,"finished":true,"transferSize":%d,'
    b'"resourceSize":%d,"statusCode":200,"mimeType":"%s","resourceType":"%s",'
    b'"priority":"%s","experimentalFromMainFrame":true,"entity":"%s"}'
)
_PRIORITIES = (b"VeryHigh", b"High", b"Medium", b"Low")


def _network_items(origin: bytes, host: bytes, h: int) -> bytes:
    count = 40 + h % 160
    items = []
    t = 0
    for i in range(count):
        x = (h >> (i % 24)) + i * 2654435761
        kind, mime, path = _RESOURCE_TYPES[x % len(_RESOURCE_TYPES)]
        if i == 0:
            url, kind, mime, entity = origin, b"Document", b"text/html", host
        elif x % 7 == 0:
            url = _THIRD_PARTIES[x % len(_THIRD_PARTIES)] % (x % 997)
            entity = url.split(b"/")[2]
        else:
            url, entity = origin.rstrip(b"/") + path % (x % 9973), host
        t += 3 + x % 40
        size = 500 + x % 180_000
        items.append(
            _REQUEST
            % (url, t, x % 10, t + 1, x % 10, t + 20 + x % 400, x % 10, size, size * 3 + 17,
               mime, kind, _PRIORITIES[x % 4], entity)
        )  # fmt: skip
    return b",".join(items)


def _tasks(h: int) -> bytes:
    parts = []
    t = 0.0
    for i in range(30 + h % 60):
        t += 5.5 + (h >> (i % 20)) % 90
        parts.append(b'{"duration":%.3f,"startTime":%.3f}' % (2.0 + (h >> (i % 16)) % 120, t))
    return b",".join(parts)


def _treemap(origin: bytes, h: int) -> bytes:
    nodes = []
    for i in range(20 + h % 40):
        x = (h >> (i % 22)) + i * 40503
        nodes.append(
            b'{"name":"%s/static/js/chunk-%d.js","resourceBytes":%d,"unusedBytes":%d,'
            b'"children":[{"name":"src/components/widget-%d.tsx","resourceBytes":%d,'
            b'"unusedBytes":%d},{"name":"node_modules/lib-%d/index.js","resourceBytes":%d}]}'
            % (origin.rstrip(b"/"), x % 9973, 20000 + x % 300000, x % 90000, i, 4000 + x % 9000,
               x % 3000, x % 50, 9000 + x % 80000)
        )  # fmt: skip
    return b'{"type":"treemap-data","nodes":[' + b",".join(nodes) + b"]}"


def _thumbnails(h: int) -> bytes:
    items = []
    for i in range(10):
        size = 5000 + ((h >> i) % 7000)
        items.append(
            b'{"timing":%d,"timestamp":%d,"data":%s}'
            % (300 * (i + 1), 18000000000 + i * 300000, _data_uri(h + i * 7919, size))
        )
    return b'{"type":"filmstrip","scale":3000,"items":[' + b",".join(items) + b"]}"


def _ms_audit(audit_id: bytes, title: bytes, value, score: float, unit: bytes = b"ms") -> bytes:
    """A metric audit; ``value`` None: the audit errored (no numericValue)."""
    if value is None:
        return (
            b'"%s":{"id":"%s","title":"%s","score":null,"scoreDisplayMode":"error",'
            b'"errorMessage":"The page did not paint any content. (NO_LCP)"}'
            % (audit_id, audit_id, title)
        )
    if unit == b"unitless":
        display = b"%.3f" % value
    else:
        display = b"%.1f\\u00a0s" % (value / 1000.0) if value >= 1000 else b"%d\\u00a0ms" % value
    return (
        b'"%s":{"id":"%s","title":"%s","description":"Lighthouse metric. [Learn more](https://'
        b'developer.chrome.com/docs/lighthouse/performance/)","score":%.2f,'
        b'"scoreDisplayMode":"numeric","displayValue":"%s","numericValue":%s,'
        b'"numericUnit":"%s"}'
        % (audit_id, audit_id, title, score, display, _number(value),
           b"unitless" if unit == b"unitless" else b"millisecond")
    )  # fmt: skip


def _number(value) -> bytes:
    return repr(value).encode() if isinstance(value, float) else b"%d" % value


def _vital_score(value, good: float, poor: float) -> float:
    if value is None:
        return 0.0
    if value <= good:
        return 0.95
    if value >= poor:
        return 0.2
    return round(0.95 - 0.75 * (value - good) / (poor - good), 2)


class PSIWriter:
    """Contract PSI lines in, PageSpeed Insights v5 responses out, one per record."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.records = 0

    def write(self, lines: list[bytes]) -> None:
        self.sink.write([self.response(line) for line in lines])
        self.records += len(lines)

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()

    @staticmethod
    def response(line: bytes) -> bytes:
        r = orjson.loads(line)
        h = zlib.crc32(line) * 2654435761 % (1 << 61)
        url = orjson.dumps(r["page"])
        raw = r["page"]
        scheme_end = raw.find("://") + 3
        slash = raw.find("/", scheme_end)
        origin = (raw if slash < 0 else raw[:slash]).lower() + "/"
        host = raw[scheme_end : slash if slash >= 0 else None].lower().encode()
        origin_b = origin.encode()
        measured = dt.datetime.fromisoformat(r["measured_at"].replace("Z", "+00:00"))
        measured = measured.astimezone(UTC)
        fetch_time = measured.strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
        analysis = (measured + dt.timedelta(seconds=8 + h % 40)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        strategy = r["strategy"].encode()
        lcp, fcp, ttfb = r.get("lcp_ms"), r.get("fcp_ms"), r.get("ttfb_ms")
        inp, cls = r.get("inp_ms"), r.get("cls")
        audits = []
        if "fcp_ms" in r:
            audits.append(_ms_audit(b"first-contentful-paint", b"First Contentful Paint", fcp,
                                    _vital_score(fcp, 1800, 3000)))  # fmt: skip
        if "lcp_ms" in r:
            audits.append(_ms_audit(b"largest-contentful-paint", b"Largest Contentful Paint",
                                    lcp, _vital_score(lcp, 2500, 4000)))  # fmt: skip
        if "ttfb_ms" in r:
            audits.append(_ms_audit(b"server-response-time", b"Initial server response time "
                                    b"was short", ttfb, _vital_score(ttfb, 800, 1800)))  # fmt: skip
        if "cls" in r:
            audits.append(_ms_audit(b"cumulative-layout-shift", b"Cumulative Layout Shift", cls,
                                    _vital_score(cls, 0.1, 0.25), b"unitless"))  # fmt: skip
        if inp is not None:
            audits.append(_ms_audit(b"interaction-to-next-paint", b"Interaction to Next Paint",
                                    inp, _vital_score(inp, 200, 500)))  # fmt: skip
        base = (fcp or 1200) + h % 900
        audits.append(_ms_audit(b"speed-index", b"Speed Index", base + 350.5, 0.7))
        audits.append(_ms_audit(b"total-blocking-time", b"Total Blocking Time", h % 700 + 0.5,
                                0.8))  # fmt: skip
        audits.append(_ms_audit(b"max-potential-fid", b"Max Potential First Input Delay",
                                h % 400 + 16, 0.6))  # fmt: skip
        audits.append(_ms_audit(b"interactive", b"Time to Interactive", (lcp or 2500) + h % 3000,
                                0.6))  # fmt: skip
        audits.append(
            b'"metrics":{"id":"metrics","title":"Metrics","score":null,"scoreDisplayMode":'
            b'"informative","details":{"type":"debugdata","items":[' + orjson.dumps(
                {"firstContentfulPaint": fcp, "largestContentfulPaint": lcp,
                 "cumulativeLayoutShift": cls, "timeToFirstByte": ttfb,
                 "interactive": (lcp or 2500) + h % 3000, "speedIndex": base + 350.5,
                 "totalBlockingTime": h % 700, "observedNavigationStart": 0,
                 "observedFirstPaint": base - 20, "observedDomContentLoaded": base + 400,
                 "observedLoad": base + 1900}
            ) + b',{"lcpInvalidated":false}]}}'
        )  # fmt: skip
        audits.append(
            b'"network-requests":{"id":"network-requests","title":"Network Requests","score":'
            b'null,"scoreDisplayMode":"informative","details":{"type":"table","headings":[],'
            b'"items":[' + _network_items(origin_b, host, h) + b"]}}"
        )
        audits.append(
            b'"screenshot-thumbnails":{"id":"screenshot-thumbnails","title":"Screenshot '
            b'Thumbnails","score":null,"scoreDisplayMode":"informative","details":'
            + _thumbnails(h)
            + b"}"
        )
        audits.append(
            b'"final-screenshot":{"id":"final-screenshot","title":"Final Screenshot","score":'
            b'null,"scoreDisplayMode":"informative","details":{"type":"screenshot","timing":'
            b'%d,"timestamp":18000300000,"data":%s}}'
            % (base + 2000, _data_uri(h >> 3, 30000 + h % 30000))
        )
        audits.append(
            b'"main-thread-tasks":{"id":"main-thread-tasks","title":"Tasks","score":null,'
            b'"scoreDisplayMode":"informative","details":{"type":"table","headings":[],'
            b'"items":[' + _tasks(h) + b"]}}"
        )
        audits.append(
            b'"script-treemap-data":{"id":"script-treemap-data","title":"Script Treemap Data",'
            b'"score":null,"scoreDisplayMode":"informative","details":' + _treemap(origin_b, h)
            + b"}"
        )  # fmt: skip
        for audit_id, title in (
            (b"render-blocking-resources", b"Eliminate render-blocking resources"),
            (b"unused-javascript", b"Reduce unused JavaScript"),
            (b"unused-css-rules", b"Reduce unused CSS"),
            (b"modern-image-formats", b"Serve images in next-gen formats"),
            (b"uses-long-cache-ttl", b"Serve static assets with an efficient cache policy"),
            (b"dom-size", b"Avoids an excessive DOM size"),
            (b"bootup-time", b"JavaScript execution time"),
            (b"mainthread-work-breakdown", b"Minimize main-thread work"),
            (b"third-party-summary", b"Minimize third-party usage"),
            (b"largest-contentful-paint-element", b"Largest Contentful Paint element"),
            (b"layout-shifts", b"Avoid large layout shifts"),
            (b"font-display", b"All text remains visible during webfont loads"),
        ):
            audits.append(
                b'"%s":{"id":"%s","title":"%s","score":%.2f,"scoreDisplayMode":"metricSavings",'
                b'"details":{"type":"opportunity","headings":[],"items":[{"url":"%sstatic/js/'
                b'app-%d.js","totalBytes":%d,"wastedBytes":%d,"wastedMs":%d}],'
                b'"overallSavingsMs":%d}}'
                % (audit_id, audit_id, title, (h % 100) / 100, origin_b, h % 997, h % 400000,
                   h % 90000, h % 900, h % 1200)
            )  # fmt: skip
        score = r["performance_score"] / 100
        crux = (
            b'{"id":%s,"metrics":{"LARGEST_CONTENTFUL_PAINT_MS":{"percentile":%d,'
            b'"category":"AVERAGE"},"CUMULATIVE_LAYOUT_SHIFT_SCORE":{"percentile":%d,'
            b'"category":"FAST"},"INTERACTION_TO_NEXT_PAINT":{"percentile":%d,"category":"FAST"}'
            b'},"overall_category":"AVERAGE","initial_url":%s}'
            % (url, 1800 + h % 2000, h % 25, 90 + h % 300, url)
        )
        return b"".join(
            (
                b'{"captchaResult":"CAPTCHA_NOT_NEEDED","kind":"pagespeedonline#result","id":',
                url,
                b',"loadingExperience":',
                crux,
                b',"lighthouseResult":{"requestedUrl":',
                url,
                b',"finalUrl":',
                url,
                b',"mainDocumentUrl":',
                url,
                b',"finalDisplayedUrl":',
                url,
                b',"lighthouseVersion":"12.2.1","userAgent":"Mozilla/5.0 (X11; Linux x86_64) '
                b'AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",'
                b'"fetchTime":"',
                fetch_time,
                b'","environment":{"networkUserAgent":"Mozilla/5.0 Chrome-Lighthouse",'
                b'"hostUserAgent":"HeadlessChrome/131.0.0.0","benchmarkIndex":%d,'
                b'"credits":{"axe-core":"4.10.2"}},"runWarnings":[],"configSettings":'
                b'{"emulatedFormFactor":"' % (1500 + h % 800),
                strategy,
                b'","formFactor":"',
                strategy,
                b'","locale":"en-US","onlyCategories":["performance"],"channel":"lr"},"audits":{',
                b",".join(audits),
                b'},"categories":{"performance":{"id":"performance","title":"Performance","score":',
                repr(score).encode(),
                b',"auditRefs":[{"id":"first-contentful-paint","weight":10,"group":"metrics",'
                b'"acronym":"FCP"},{"id":"largest-contentful-paint","weight":25,"group":'
                b'"metrics","acronym":"LCP"},{"id":"total-blocking-time","weight":30,"group":'
                b'"metrics","acronym":"TBT"},{"id":"cumulative-layout-shift","weight":25,'
                b'"group":"metrics","acronym":"CLS"},{"id":"speed-index","weight":10,"group":'
                b'"metrics","acronym":"SI"}]}},"categoryGroups":{"metrics":{"title":"Metrics"},'
                b'"diagnostics":{"title":"Diagnostics"}},"timing":{"total":%d.%d},'
                b'"i18n":{"rendererFormattedStrings":{"varianceDisclaimer":"Values are '
                b'estimated and may vary."}},"fullPageScreenshot":{"screenshot":{"data":'
                % (9000 + h % 9000, h % 10),
                _data_uri(h >> 5, 150_000 + h % 560_000),
                b',"width":412,"height":%d},"nodes":{"page-0-BODY":{"id":"","top":0,"bottom":'
                b'%d,"left":0,"right":412,"width":412,"height":%d}}}},"analysisUTCTimestamp":"'
                % (4000 + h % 9000, 4000 + h % 9000, 4000 + h % 9000),
                analysis.encode(),
                b'"}',
            )
        )
