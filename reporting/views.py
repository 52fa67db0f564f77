"""HTTP interface of the reporting API: views parse input and call selectors/services.

Reports need ``Authorization: Bearer <access>`` or a logged-in session (the
browsable API, CSRF-checked on unsafe methods). Metric names are those of
CONTRACT section 3; ``users`` is a sum of hourly users, not a count of
distinct people. Every report says how fresh it is (``freshness``).
"""

from __future__ import annotations

import csv
import io

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts import selectors as access
from observability import health

from . import comparison, cursors, openapi, selectors, services
from .ratelimits import rate_limited, report_owner
from .renderers import OrjsonRenderer, ReportBrowsableAPIRenderer
from .serializers import (
    LogoutSerializer,
    PageRangeSerializer,
    PagesSerializer,
    RefreshSerializer,
    RegisterSerializer,
    SummaryRangeSerializer,
    TimeseriesSerializer,
)

USERS_NOTE = (
    "Metric names follow the contract: traffic sums (users, sessions, views, bounces, "
    "engagement_seconds) and ratios (bounce_rate, avg_engagement_seconds, views_per_session; "
    "null when sessions is 0). `users` is a sum of hourly users, not a count of distinct "
    "people. Performance per strategy (mobile, desktop, both): samples, "
    "performance_score_avg (weighted mean), and per vital p50/p75/p95 (within 2% of the "
    "exact nearest-rank percentile) and the exact shares good / needs_improvement / poor. "
    "Each metric is rounded to the precision of its kind (docs/metrics.md). "
    "`from` is inclusive, `to` exclusive, hour precision, UTC. `format=csv` streams a CSV. "
    "Authenticated by a Bearer access token, a read-only API key (`Authorization: Api-Key "
    "<key>`, limited to its sites) or a logged-in session (browsable API)."
)


def report_schema(summary: str, description: str, query, body, example, extra=None, path=()):
    """The schema of a report: its parameters, its answer as JSON or CSV, its errors."""
    errors = {**openapi.REPORT_ERRORS, **(extra or {})}
    return extend_schema(
        summary=summary,
        description=description,
        tags=["reports"],
        parameters=[
            *path,
            query,
            *openapi.BOUND_PARAMETERS,
            openapi.FORMAT_PARAMETER,
            openapi.RETRY_AFTER,
        ],
        responses={
            (200, "application/json"): body,
            (200, "text/csv"): openapi.CSV,
            **{(code, "application/json"): error for code, error in sorted(errors.items())},
        },
        examples=[example],
    )


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return _csv_text([_flatten(data)] if isinstance(data, dict) else data).encode()


RENDERERS = [OrjsonRenderer, ReportBrowsableAPIRenderer, CSVRenderer]


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif not isinstance(value, list):
            flat[name] = value
    return flat


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _csv_stream(rows, filename: str) -> StreamingHttpResponse:
    """Streams a CSV, one flattened row at a time."""

    def lines():
        writer = None
        for row in rows:
            flat = _flatten(row)
            buffer = io.StringIO()
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(flat))
                writer.writeheader()
            else:
                writer = csv.DictWriter(buffer, fieldnames=writer.fieldnames)
            writer.writerow(flat)
            yield buffer.getvalue()

    response = StreamingHttpResponse(lines(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _wants_csv(request) -> bool:
    return getattr(request.accepted_renderer, "format", None) == "csv"


def _filters(data: dict) -> selectors.Filters:
    return selectors.Filters(
        site=data.get("site"),
        page=data.get("page"),
        path_prefix=data.get("path_prefix"),
        sites=data["sites"],
    )


def _refuse_unknown(request, accepted: list[str]) -> None:
    """An unknown query parameter is a 400 naming it, never silently ignored."""
    unknown = [name for name in request.query_params if name not in accepted]
    if unknown:
        names = ", ".join(accepted)
        raise serializers.ValidationError(
            {"unknown": [f"parameter {n!r} is not accepted; accepted: {names}" for n in unknown]}
        )


class ReportView(APIView):
    """A report: parameters validated by ``query_serializer``, the body as JSON or a
    streamed CSV. Errors are JSON whatever the format asked for."""

    renderer_classes = RENDERERS
    query_serializer: type[serializers.Serializer]

    def params(self, request) -> dict:
        """The validated parameters, scoped to the sites the request may read: ``sites``
        (None: every site), ``site`` resolved from its host or id. A site or page the
        request may not read is a 404, the same as one that does not exist."""
        _refuse_unknown(request, [*self.query_serializer().get_fields(), "format"])
        # An empty parameter (an empty field of the browsable API's form) is one not given.
        given = {k: v for k, v in request.query_params.items() if v != ""}
        params = self.query_serializer(data=given)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        data["sites"] = access.visible_site_ids(request.user, request.auth)
        if data.get("site") is not None:
            data["site"] = access.report_site_id(request.user, request.auth, data["site"])
        if data.get("page") is not None:
            access.report_page(request.user, request.auth, data["page"])
        return data

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400 and _wants_csv(request):
            request.accepted_renderer = OrjsonRenderer()
            request.accepted_media_type = OrjsonRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @staticmethod
    def answer(request, report, csv_rows, filename: str):
        """``report(encoded)`` is the selector's answer: for JSON its encoded form,
        copied into the response as it is; for CSV the decoded body, whose rows
        ``csv_rows(body)`` picks, streamed. It is computed within the caller's report
        budget (services.report_budget): 429 with ``Retry-After`` when the caller's
        reports already running are as many as allowed, 503 when a statement runs
        past the statement timeout."""
        try:
            with services.report_budget(report_owner(request)):
                if _wants_csv(request):
                    rows = csv_rows(report(False))
                else:
                    body = report(True)
        except services.ReportsBusy as exc:
            busy = Response({"detail": str(exc)}, status=status.HTTP_429_TOO_MANY_REQUESTS)
            busy["Retry-After"] = str(exc.retry_after)
            return busy
        except services.ReportTimedOut as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        if _wants_csv(request):
            return _csv_stream(rows, filename)
        return Response(body)


class SummaryView(ReportView):
    query_serializer = SummaryRangeSerializer

    @report_schema(
        "Traffic and performance over a range",
        USERS_NOTE + openapi.COMPARE_NOTE,
        SummaryRangeSerializer,
        openapi.SummarySerializer,
        openapi.SUMMARY_EXAMPLE,
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request):
        data = self.params(request)
        filters = _filters(data)
        return self.answer(
            request,
            lambda encoded: comparison.summary(
                lambda start, end, enc: selectors.summary(start, end, filters, enc),
                data["start"],
                data["end"],
                data.get("compare"),
                encoded,
            ),
            lambda body: [body],
            "summary.csv",
        )


class TimeseriesView(ReportView):
    query_serializer = TimeseriesSerializer

    @report_schema(
        "Metrics per hour, interval, day, month or year over a range",
        USERS_NOTE + " At most METRIFLOW_MAX_BUCKETS buckets; the first and last are cut "
        "to the range." + openapi.COMPARE_NOTE + openapi.COMPARE_SERIES_NOTE,
        TimeseriesSerializer,
        openapi.TimeseriesBodySerializer,
        openapi.TIMESERIES_EXAMPLE,
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request):
        data = self.params(request)
        filters = _filters(data)
        return self.answer(
            request,
            lambda encoded: comparison.timeseries(
                lambda start, end, enc: selectors.timeseries(
                    data["granularity"], start, end, filters, enc
                ),
                data["start"],
                data["end"],
                data.get("compare"),
                encoded,
            ),
            comparison.csv_points,
            "timeseries.csv",
        )


def _decode_cursor(cursor: str | None) -> int:
    try:
        return cursors.decode(cursor)
    except ValueError:
        raise serializers.ValidationError({"cursor": ["not a cursor from this API"]}) from None


class PagesView(ReportView):
    query_serializer = PagesSerializer

    @report_schema(
        "Top pages over a range (cursor-paginated)",
        USERS_NOTE + " Ordering: `order_by`, `-` for descending; ties by page id.",
        PagesSerializer,
        openapi.PagesBodySerializer,
        openapi.PAGES_EXAMPLE,
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request):
        data = self.params(request)
        offset = _decode_cursor(data.get("cursor"))
        filters = _filters(data)
        return self.answer(
            request,
            lambda encoded: selectors.top_pages(
                data["start"],
                data["end"],
                filters,
                data["order_by"],
                offset,
                data["limit"],
                encoded,
            ),
            lambda body: body["results"],
            "pages.csv",
        )


class PageView(ReportView):
    query_serializer = PageRangeSerializer

    @report_schema(
        "One page's metrics over a range",
        USERS_NOTE,
        PageRangeSerializer,
        openapi.PageReportSerializer,
        openapi.PAGE_EXAMPLE,
        {404: openapi.NOT_FOUND},
        [openapi.PAGE_ID_PARAMETER],
    )
    @extend_schema(operation_id="reports_page")
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request, page_id: int):
        data = self.params(request)
        page = access.report_page(request.user, request.auth, page_id)
        return self.answer(
            request,
            lambda encoded: selectors.page_report(page, data["start"], data["end"], encoded),
            lambda body: [body],
            f"page-{page_id}.csv",
        )


# ------------------------------------------------------------------ identity


AUTH_ERRORS = {400: openapi.BAD_PAYLOAD, 429: openapi.TOO_MANY}
AUTH_RATE_NOTE = (
    " Limited per client IP (METRIFLOW_RATE_AUTH), each of register, token, refresh and "
    "logout counted apart."
)


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Create an account",
        description="A username (Django's rules) and a password that passes the password "
        "validators. 403 when registration is closed (METRIFLOW_OPEN_REGISTRATION off, the "
        "production default): accounts are then created by staff."
        + AUTH_RATE_NOTE
        + " Registrations are also limited per client IP per hour (METRIFLOW_RATE_REGISTER).",
        tags=["auth"],
        parameters=[openapi.RETRY_AFTER],
        request=RegisterSerializer,
        responses={
            201: openapi.RegisteredSerializer,
            403: openapi.REGISTRATION_CLOSED,
            **AUTH_ERRORS,
        },
    )
    @rate_limited(group="auth-register", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    @rate_limited(group="auth-register-hourly", rate_setting="METRIFLOW_RATE_REGISTER", key="ip")
    def post(self, request):
        if not services.registration_open():
            raise PermissionDenied(services.REGISTRATION_CLOSED)
        payload = RegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = services.register_user(**payload.validated_data)
        return Response({"id": user.pk, "username": user.username}, status=status.HTTP_201_CREATED)


class TokenView(TokenObtainPairView):
    """Access and refresh tokens for a username and password."""

    @extend_schema(
        summary="Access and refresh tokens for a username and password",
        description="401 for wrong credentials or an inactive user." + AUTH_RATE_NOTE,
        tags=["auth"],
        parameters=[openapi.RETRY_AFTER],
        responses={
            200: openapi.TokenPairSerializer,
            401: openapi.UNAUTHORIZED,
            **AUTH_ERRORS,
        },
    )
    @rate_limited(group="auth-token", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class RefreshView(TokenRefreshView):
    """A new access token (and a rotated refresh token; the old one is blacklisted)."""

    serializer_class = RefreshSerializer

    @extend_schema(
        summary="A new access token and a rotated refresh token",
        description="The old refresh token is blacklisted; 401 for a used, blacklisted or "
        "expired token, or one of a deleted or inactive user." + AUTH_RATE_NOTE,
        tags=["auth"],
        parameters=[openapi.RETRY_AFTER],
        request=openapi.RefreshRequestSerializer,
        responses={
            200: openapi.TokenPairSerializer,
            401: openapi.UNAUTHORIZED,
            **AUTH_ERRORS,
        },
    )
    @rate_limited(group="auth-refresh", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class LogoutView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Blacklist a refresh token",
        description="400 if the token is not a valid refresh token, is already blacklisted "
        "or is one of a deleted or inactive user." + AUTH_RATE_NOTE,
        tags=["auth"],
        parameters=[openapi.RETRY_AFTER],
        request=LogoutSerializer,
        responses={
            205: OpenApiResponse(description="Logged out (no body)."),
            400: openapi.BAD_REQUEST,
            429: openapi.TOO_MANY,
        },
    )
    @rate_limited(group="auth-logout", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    def post(self, request):
        payload = LogoutSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            services.logout(refresh=payload.validated_data["refresh"])
        except services.TokenError as exc:
            return Response({"refresh": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(status=status.HTTP_205_RESET_CONTENT)


class HealthView(APIView):
    """Liveness of the API and the services it depends on (no authentication)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Health of the API, PostgreSQL and Redis",
        tags=["health"],
        responses={
            (200, "application/json"): OpenApiResponse(
                openapi.HealthSerializer, description="PostgreSQL and Redis answer."
            ),
            (503, "application/json"): OpenApiResponse(
                openapi.HealthSerializer, description="PostgreSQL or Redis does not answer."
            ),
        },
    )
    def get(self, request):
        health = selectors.service_health()
        code = 200 if all(health.values()) else 503
        return Response({"ok": code == 200, "services": health}, status=code)


class LivenessView(APIView):
    """The API process answers; no service is asked (no authentication)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Liveness: the API process answers",
        tags=["health"],
        responses={
            (200, "application/json"): OpenApiResponse(
                openapi.LivenessSerializer, description="The process answers."
            ),
        },
    )
    def get(self, request):
        return Response(health.liveness())


class ReadinessView(APIView):
    """Whether this deployment can do its work: PostgreSQL, Redis, the broker, a worker on
    every stage queue and the pipeline's lag, each check bounded and named (no
    authentication)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Readiness: database, cache, broker, workers and pipeline lag",
        tags=["health"],
        responses={
            (200, "application/json"): OpenApiResponse(
                openapi.ReadinessSerializer, description="Every check passes."
            ),
            (503, "application/json"): OpenApiResponse(
                openapi.ReadinessSerializer,
                description="One check or more fails: `failing` names them, each check says why.",
            ),
        },
    )
    def get(self, request):
        ready = health.readiness()
        return Response(ready.as_dict(), status=200 if ready.ok else 503)
