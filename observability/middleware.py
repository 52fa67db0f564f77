"""Counts and times every request the API answers (``metriflow_http_*``)."""

from __future__ import annotations

import time

from django.conf import settings

from .metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

# Methods outside these are counted as "other": a label's values stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The scrape itself is left out: a scrape every few seconds would dominate the rates
# and its time (the database and broker reads) is not the API's latency.
METRICS_VIEW = "observability:metrics"


def view_label(request) -> str:
    """The URL's name (``reporting:summary``), or the view's dotted path; ``static`` for
    whitenoise's files, ``unmatched`` for a path no URL matched (a 404): never the
    path itself, which a client chooses."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"


class RequestMetricsMiddleware:
    """Outermost middleware, so that the time covers every other middleware too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        view = view_label(request)
        if view != METRICS_VIEW:
            method = request.method if request.method in METHODS else "other"
            HTTP_REQUESTS.labels(method, view, str(response.status_code)).inc()
            HTTP_REQUEST_DURATION.labels(method, view).observe(time.perf_counter() - started)
        return response
