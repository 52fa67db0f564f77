"""HTTP interface of the reporting API: views parse input and call selectors/services.

Reports need ``Authorization: Bearer <access>``. Metric names are those of
CONTRACT section 3; ``users`` is a sum of hourly users, not a count of
distinct people. Every report says how fresh it is (``freshness``).
"""

from __future__ import annotations

import csv
import io

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from pipeline.models import Page

from . import cursors, selectors, services
from .ratelimits import rate_limited
from .renderers import OrjsonRenderer
from .serializers import (
    LogoutSerializer,
    PageRangeSerializer,
    PagesSerializer,
    RangeSerializer,
    RegisterSerializer,
    TimeseriesSerializer,
)

USERS_NOTE = (
    "Metric names follow the contract: traffic sums (users, sessions, views, bounces, "
    "engagement_seconds) and ratios (bounce_rate, avg_engagement_seconds, views_per_session; "
    "null when sessions is 0). `users` is a sum of hourly users, not a count of distinct "
    "people. Performance per strategy (mobile, desktop, both): samples, "
    "performance_score_avg (weighted mean), and per vital p50/p75/p95 (within 2% of the "
    "exact nearest-rank percentile) and the exact shares good / needs_improvement / poor. "
    "`from` is inclusive, `to` exclusive, hour precision, UTC. `format=csv` streams a CSV."
)
ERRORS = {
    400: OpenApiResponse(description="Bad parameters: a JSON object naming each problem."),
    401: OpenApiResponse(description="No valid access token."),
    429: OpenApiResponse(description="Rate limit exceeded; see the Retry-After header."),
}


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return _csv_text([_flatten(data)] if isinstance(data, dict) else data).encode()


RENDERERS = [OrjsonRenderer, BrowsableAPIRenderer, CSVRenderer]


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
        site=data.get("site"), page=data.get("page"), path_prefix=data.get("path_prefix")
    )


class ReportView(APIView):
    """A report: parameters validated by a serializer, the body as JSON or a streamed CSV."""

    renderer_classes = RENDERERS

    @staticmethod
    def params(serializer_class, request) -> dict:
        params = serializer_class(data=request.query_params)
        params.is_valid(raise_exception=True)
        return params.validated_data

    @staticmethod
    def answer(request, report, csv_rows, filename: str):
        """``report(encoded)`` is the selector's answer: for JSON its encoded form,
        copied into the response as it is; for CSV the decoded body, whose rows
        ``csv_rows(body)`` picks, streamed."""
        if _wants_csv(request):
            return _csv_stream(csv_rows(report(False)), filename)
        return Response(report(True))


class SummaryView(ReportView):
    @extend_schema(
        summary="Traffic and performance over a range",
        description=USERS_NOTE,
        parameters=[RangeSerializer],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request):
        data = self.params(RangeSerializer, request)
        filters = _filters(data)
        return self.answer(
            request,
            lambda encoded: selectors.summary(data["start"], data["end"], filters, encoded),
            lambda body: [body],
            "summary.csv",
        )


class TimeseriesView(ReportView):
    @extend_schema(
        summary="Metrics per hour, interval, day, month or year over a range",
        description=USERS_NOTE,
        parameters=[TimeseriesSerializer],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request):
        data = self.params(TimeseriesSerializer, request)
        filters = _filters(data)
        return self.answer(
            request,
            lambda encoded: selectors.timeseries(
                data["granularity"], data["start"], data["end"], filters, encoded
            ),
            lambda body: body["series"],
            "timeseries.csv",
        )


def _decode_cursor(cursor: str | None) -> int:
    try:
        return cursors.decode(cursor)
    except ValueError:
        raise serializers.ValidationError({"cursor": "not a cursor from this API"}) from None


class PagesView(ReportView):
    @extend_schema(
        summary="Top pages over a range (cursor-paginated)",
        description=USERS_NOTE + " Ordering: `order_by`, `-` for descending; ties by page id.",
        parameters=[PagesSerializer],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request):
        data = self.params(PagesSerializer, request)
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
    @extend_schema(
        summary="One page's metrics over a range",
        operation_id="reports_page",
        description=USERS_NOTE,
        parameters=[PageRangeSerializer],
        responses={
            200: OpenApiTypes.OBJECT,
            404: OpenApiResponse(description="No such page."),
            **ERRORS,
        },
    )
    @rate_limited(group="reports", rate_setting="METRIFLOW_RATE_REPORTS", key="user")
    def get(self, request, page_id: int):
        data = self.params(PageRangeSerializer, request)
        page = get_object_or_404(Page, pk=page_id)
        return self.answer(
            request,
            lambda encoded: selectors.page_report(page, data["start"], data["end"], encoded),
            lambda body: [body],
            f"page-{page_id}.csv",
        )


# ------------------------------------------------------------------ identity


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Create an account",
        request=RegisterSerializer,
        responses={
            201: inline_serializer(
                "Registered",
                {"id": serializers.IntegerField(), "username": serializers.CharField()},
            ),
            400: ERRORS[400],
            429: ERRORS[429],
        },
    )
    @rate_limited(group="auth", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    def post(self, request):
        payload = RegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = services.register_user(**payload.validated_data)
        return Response({"id": user.pk, "username": user.username}, status=status.HTTP_201_CREATED)


class TokenView(TokenObtainPairView):
    """Access and refresh tokens for a username and password."""

    @rate_limited(group="auth", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class RefreshView(TokenRefreshView):
    """A new access token (and a rotated refresh token; the old one is blacklisted)."""

    @rate_limited(group="auth", rate_setting="METRIFLOW_RATE_AUTH", key="ip")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class LogoutView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Blacklist a refresh token",
        request=LogoutSerializer,
        responses={205: OpenApiResponse(description="Logged out."), 400: ERRORS[400]},
    )
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
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                {
                    "ok": serializers.BooleanField(),
                    "services": serializers.DictField(child=serializers.BooleanField()),
                },
            )
        },
    )
    def get(self, request):
        health = selectors.service_health()
        code = 200 if all(health.values()) else 503
        return Response({"ok": code == 200, "services": health}, status=code)
