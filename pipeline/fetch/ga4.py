"""GA4 Data API: a ``runReport`` paged through with ``limit``/``offset`` into an NDJSON file.

The report asks for traffic per page and hour, the dimensions and metrics that
``manage.py ingest --format ga4`` maps onto the contract's GA record. Each page of
the report is one response, written as one line of the output file as the API
returned it; paging stops when the rows received reach the response's ``rowCount``
(or a page comes back empty), and never goes past ``max_pages``.

Credentials are a service account's JSON key file: google-auth signs a JWT with
its private key and exchanges it at the key's ``token_uri`` for an access token,
which is refreshed when it expires.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass

import orjson

from pipeline.ingest.formats import ga4 as formats_ga4

from .http import Client, FetchError

SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
DIMENSIONS = formats_ga4.DIMENSIONS
HOST_PATH_DIMENSIONS = formats_ga4.HOST_PATH_DIMENSIONS
METRICS = formats_ga4.REPORT_METRICS
MAX_PAGE_SIZE = 250_000  # the API's own limit on ``limit``
_PROPERTY = re.compile(r"^[0-9]{1,20}$")


@dataclass
class ReportResult:
    path: str
    pages: int
    rows: int
    row_count: int


def report_url(base_url: str, property_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1beta/properties/{property_id}:runReport"


def report_request(
    start: dt.date,
    end: dt.date,
    *,
    limit: int,
    offset: int,
    dimensions: tuple[str, ...] = DIMENSIONS,
) -> dict:
    """The body of one ``runReport`` call: one page of the report, in a stable order."""
    return {
        "dateRanges": [{"startDate": start.isoformat(), "endDate": end.isoformat()}],
        "dimensions": [{"name": name} for name in dimensions],
        "metrics": [{"name": name} for name in METRICS],
        "orderBys": [{"dimension": {"dimensionName": name}} for name in dimensions],
        "limit": limit,
        "offset": offset,
        "keepEmptyRows": False,
        "returnPropertyQuota": True,
    }


def check_property(property_id: str) -> str:
    """A GA4 property is numeric (``properties/123456789`` is accepted too)."""
    value = property_id.strip().removeprefix("properties/")
    if not _PROPERTY.match(value):
        raise ValueError(f"a GA4 property id is a number, got {property_id!r}")
    return value


def check_range(start: dt.date, end: dt.date, max_days: int) -> None:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    days = (end - start).days + 1
    if days > max_days:
        raise ValueError(f"{days} days asked, more than the limit of {max_days}")


def service_account_headers(credentials_path: str, *, timeout: float):
    """A ``headers()`` callable giving a bearer token from a service-account key file.

    The token is fetched on first use and again when it is about to expire.
    """
    import google.auth.exceptions
    import google.auth.transport.requests
    import requests
    from google.oauth2 import service_account

    try:
        with open(credentials_path, "rb") as f:
            info = orjson.loads(f.read(1 << 20))
        credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FetchError(f"{credentials_path}: not a service-account key file ({exc})") from None
    session = requests.Session()

    def request(*args, **kwargs):
        kwargs.setdefault("timeout", timeout)
        return google.auth.transport.requests.Request(session)(*args, **kwargs)

    def headers() -> dict[str, str]:
        if not credentials.valid:
            try:
                credentials.refresh(request)
            except google.auth.exceptions.GoogleAuthError as exc:
                raise FetchError(f"access token from {info['token_uri']}: {exc}") from None
        return {"Authorization": f"Bearer {credentials.token}"}

    return headers


def fetch_report(
    client: Client,
    *,
    base_url: str,
    property_id: str,
    start: dt.date,
    end: dt.date,
    output: str,
    page_size: int,
    max_pages: int,
    dimensions: tuple[str, ...] = DIMENSIONS,
) -> ReportResult:
    """Every page of the report into ``output`` (NDJSON, one response per line).

    The file is written as ``output + '.part'`` and renamed when the last page is in,
    so a failed fetch leaves no partial file under the final name.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be from 1 to {MAX_PAGE_SIZE:,}")
    url = report_url(base_url, property_id)
    tmp = output + ".part"
    pages = rows = row_count = 0
    try:
        with open(tmp, "wb") as out:
            while True:
                if pages == max_pages:
                    raise FetchError(
                        f"property {property_id}: the report has {row_count:,} rows, more than "
                        f"{max_pages:,} pages of {page_size:,}; ask for fewer days"
                    )
                body = client.request_json(
                    "POST",
                    url,
                    json=report_request(
                        start, end, limit=page_size, offset=rows, dimensions=dimensions
                    ),
                    label=f"property {property_id} page {pages + 1} (offset {rows:,})",
                )
                out.write(orjson.dumps(body) + b"\n")
                pages += 1
                got = body.get("rows") or []
                if not isinstance(got, list):
                    raise FetchError(f"property {property_id}: 'rows' is not a list")
                row_count = _row_count(body)
                rows += len(got)
                if not got or rows >= row_count:
                    break
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return ReportResult(output, pages, rows, row_count)


def _row_count(body: dict) -> int:
    value = body.get("rowCount", 0)  # absent when the report is empty
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FetchError(f"rowCount is not a number: {value!r}") from None
