"""A fetch and its ingest, configured from the settings (``manage.py fetch``)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from pipeline.ingest import FileResult, ingest_file

from . import ga4, psi
from .http import Client, RetryPolicy


@dataclass
class FetchOutcome:
    """What was fetched, and the ingest of the file (None with ``ingest=False``)."""

    fetched: ga4.ReportResult | psi.RunResult
    ingested: FileResult | None


def client_from_settings(
    headers: Callable[[], dict[str, str]] = dict, log: Callable[[str], None] | None = None
) -> Client:
    return Client(
        policy=RetryPolicy(
            attempts=settings.METRIFLOW_FETCH_ATTEMPTS,
            base_seconds=settings.METRIFLOW_FETCH_BACKOFF_SECONDS,
            max_seconds=settings.METRIFLOW_FETCH_BACKOFF_MAX_SECONDS,
            max_retry_after=settings.METRIFLOW_FETCH_RETRY_AFTER_MAX_SECONDS,
        ),
        connect_timeout=settings.METRIFLOW_FETCH_CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.METRIFLOW_FETCH_TIMEOUT_SECONDS,
        max_response_bytes=settings.METRIFLOW_FETCH_MAX_RESPONSE_BYTES,
        headers=headers,
        log=log,
    )


def default_output(name: str) -> str:
    """``DATA_DIR/fetch/<name>-<UTC time>.ndjson`` (the name starts with the format)."""
    folder = os.path.join(settings.METRIFLOW_DATA_DIR, "fetch")
    os.makedirs(folder, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join(folder, f"{name}-{stamp}.ndjson")


def _ingest(path: str, file_format: str, on_committed) -> FileResult:
    return ingest_file(path, file_format=file_format, on_committed=on_committed)


def fetch_ga4(
    *,
    property_id: str,
    start: dt.date,
    end: dt.date,
    credentials: str | None = None,
    output: str | None = None,
    page_size: int | None = None,
    host_path: bool = False,
    ingest: bool = True,
    on_committed: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> FetchOutcome:
    """The GA4 report of ``property_id`` for the days ``start``..``end`` (inclusive),
    written to ``output`` and ingested with ``--format ga4``.

    ValueError for bad arguments; FetchError when the API fails for good.
    """
    property_id = ga4.check_property(property_id)
    ga4.check_range(start, end, settings.METRIFLOW_GA4_MAX_DAYS)
    credentials = credentials or settings.METRIFLOW_GA4_CREDENTIALS
    if not credentials:
        raise ValueError(
            "no credentials: give --credentials FILE (a service-account key file) or set "
            "METRIFLOW_GA4_CREDENTIALS / GOOGLE_APPLICATION_CREDENTIALS"
        )
    headers = ga4.service_account_headers(
        credentials, timeout=settings.METRIFLOW_FETCH_TIMEOUT_SECONDS
    )
    output = output or default_output(f"ga4-{property_id}-{start:%Y%m%d}-{end:%Y%m%d}")
    report = ga4.fetch_report(
        client_from_settings(headers, log),
        base_url=settings.METRIFLOW_GA4_API_URL,
        property_id=property_id,
        start=start,
        end=end,
        output=output,
        page_size=page_size or settings.METRIFLOW_GA4_PAGE_SIZE,
        max_pages=settings.METRIFLOW_GA4_MAX_PAGES,
        dimensions=ga4.HOST_PATH_DIMENSIONS if host_path else ga4.DIMENSIONS,
    )
    # An empty report (no traffic in the range) is a file of one response and nothing to load.
    ingested = _ingest(report.path, "ga4", on_committed) if ingest and report.rows else None
    return FetchOutcome(report, ingested)


def fetch_psi(
    *,
    urls: list[str],
    strategies: tuple[str, ...],
    key: str | None = None,
    concurrency: int | None = None,
    output: str | None = None,
    ingest: bool = True,
    on_committed: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> FetchOutcome:
    """One PageSpeed run per URL and strategy, written to ``output`` and ingested with
    ``--format psi``. A URL that fails is in ``fetched.failures``; the rest go on."""
    urls = psi.check_urls(
        urls, settings.METRIFLOW_PSI_MAX_URLS, settings.METRIFLOW_INGEST_MAX_URL_CHARS
    )
    concurrency = concurrency or settings.METRIFLOW_PSI_CONCURRENCY
    if not 1 <= concurrency <= settings.METRIFLOW_PSI_MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be from 1 to {settings.METRIFLOW_PSI_MAX_CONCURRENCY}")
    output = output or default_output("psi")
    runs = psi.fetch_runs(
        client_from_settings(log=log),
        base_url=settings.METRIFLOW_PSI_API_URL,
        urls=urls,
        strategies=strategies,
        output=output,
        key=key or settings.METRIFLOW_PSI_API_KEY or None,
        concurrency=concurrency,
    )
    ingested = _ingest(runs.path, "psi", on_committed) if ingest else None
    return FetchOutcome(runs, ingested)
