"""The OpenAPI description of the reporting API's answers (drf-spectacular).

These serializers only describe what ``selectors.py`` returns (they never
serialize anything): the metrics of CONTRACT section 3 as ``metrics.py``
composes them, freshness, the range, and the error bodies. The schema tests
check every answer against them.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from .metrics import PRECISION, VITALS, vital_kind
from .serializers import BOUND_HELP, BOUND_PATTERN, MAX_ID

# ------------------------------------------------------------------ metrics


def _decimals(kind: str) -> str:
    return f"Rounded to {PRECISION[kind]} decimals."


class TrafficSerializer(serializers.Serializer):
    users = serializers.IntegerField(help_text="Sum of hourly users, not distinct people.")
    sessions = serializers.IntegerField()
    views = serializers.IntegerField()
    bounces = serializers.IntegerField()
    engagement_seconds = serializers.FloatField(help_text=_decimals("sum"))
    bounce_rate = serializers.FloatField(
        allow_null=True,
        help_text=f"bounces / sessions; null when sessions is 0. {_decimals('ratio')}",
    )
    avg_engagement_seconds = serializers.FloatField(
        allow_null=True,
        help_text=f"engagement_seconds / sessions; null when sessions is 0. {_decimals('seconds')}",
    )
    views_per_session = serializers.FloatField(
        allow_null=True,
        help_text=f"views / sessions; null when sessions is 0. {_decimals('ratio')}",
    )


def _vital_serializer(vital: str) -> type[serializers.Serializer]:
    kind = vital_kind(vital)
    unit = " in ms" if kind == "ms" else ""
    percentile = (
        f"Nearest-rank percentile{unit}, within 2% of the exact one (CLS: or 0.005); "
        f"null without samples. {_decimals(kind)}"
    )
    share = f"Share of the samples; null without samples. {_decimals('ratio')}"
    fields = {
        "p50": serializers.FloatField(allow_null=True, help_text=percentile),
        "p75": serializers.FloatField(allow_null=True, help_text=percentile),
        "p95": serializers.FloatField(allow_null=True, help_text=percentile),
        "samples": serializers.IntegerField(help_text="Non-null samples of this vital."),
        "good": serializers.FloatField(allow_null=True, help_text=share),
        "needs_improvement": serializers.FloatField(allow_null=True, help_text=share),
        "poor": serializers.FloatField(allow_null=True, help_text=share),
    }
    name = "Vital" if kind == "ms" else "CumulativeLayoutShift"
    return type(name, (serializers.Serializer,), fields)


VitalMsSerializer = _vital_serializer("lcp_ms")
VitalClsSerializer = _vital_serializer("cls")
_VITAL_SERIALIZERS = {"ms": VitalMsSerializer, "cls": VitalClsSerializer}  # by vital_kind()


StrategySerializer = type(
    "Strategy",
    (serializers.Serializer,),
    {
        "samples": serializers.IntegerField(help_text="PSI records."),
        "performance_score_avg": serializers.FloatField(
            allow_null=True,
            help_text=f"Mean score (0..100) over the samples; null without samples. "
            f"{_decimals('score')}",
        ),
        **{v: _VITAL_SERIALIZERS[vital_kind(v)]() for v in VITALS},
    },
)


class PerformanceSerializer(serializers.Serializer):
    mobile = StrategySerializer()
    desktop = StrategySerializer()
    both = StrategySerializer(help_text="Mobile and desktop samples together.")


class QualitySerializer(serializers.Serializer):
    batch = serializers.IntegerField(help_text="The ingest batch (one file).")
    responses = serializers.IntegerField(help_text="Its GA4 responses that carry a flag.")
    rows = serializers.IntegerField(help_text="Rows of those responses that were accepted.")
    first_hour = serializers.DateTimeField(help_text="First UTC hour of those rows.")
    last_hour = serializers.DateTimeField(help_text="Last UTC hour of those rows.")
    data_loss_from_other_row = serializers.BooleanField(
        help_text="GA4 folded rows into an '(other)' row, which Metriflow rejects: traffic "
        "of these hours is missing (metadata.dataLossFromOtherRow)."
    )
    subject_to_thresholding = serializers.BooleanField(
        help_text="GA4 withheld rows with small counts (metadata.subjectToThresholding)."
    )
    sampled = serializers.BooleanField(
        help_text="GA4 computed the report from a sample (metadata.samplingMetadatas)."
    )


class FreshnessSerializer(serializers.Serializer):
    pipeline_run_at = serializers.DateTimeField(
        allow_null=True,
        help_text="End of the newest completed stage run over a window the range overlaps.",
    )
    pending = serializers.BooleanField(help_text="Whether work for the range is still waiting.")
    quality = QualitySerializer(
        many=True,
        help_text="The ingested batches over the range whose GA4 reports said they are "
        "incomplete (newest first, at most 20; docs/sources.md). Empty: none said so.",
    )


class RangeBodySerializer(serializers.Serializer):
    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(help_text="Start, inclusive (UTC).")
        fields["to"] = serializers.DateTimeField(help_text="End, exclusive (UTC).")
        return fields


# ------------------------------------------------------------------ period comparison

CHANGE_HELP = (
    "(current - previous) / previous; null when the previous value is 0 or null, or the "
    f"current one is null. {_decimals('change')}"
)
_CHANGES: dict[type, type[serializers.Serializer]] = {}


def _change_of(metrics: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The relative change of each metric of ``metrics``, in its shape (one component
    per metrics component: ``TrafficChange``, ``VitalChange``, ...)."""
    if metrics not in _CHANGES:
        fields = {
            name: _change_of(type(field))()
            if isinstance(field, serializers.Serializer)
            else serializers.FloatField(allow_null=True, help_text=CHANGE_HELP)
            for name, field in metrics._declared_fields.items()
        }
        name = metrics.__name__.removesuffix("Serializer") + "Change"
        _CHANGES[metrics] = type(name, (serializers.Serializer,), fields)
    return _CHANGES[metrics]


class MetricsChangeSerializer(serializers.Serializer):
    traffic = _change_of(TrafficSerializer)()
    performance = _change_of(PerformanceSerializer)()


PREVIOUS_HELP = "With `compare` only: the same metrics over the range compared with."
CHANGE_GROUP_HELP = "With `compare` only: the relative change of each metric."


class PeriodSerializer(RangeBodySerializer):
    """A range's metrics and freshness."""

    traffic = TrafficSerializer()
    performance = PerformanceSerializer()
    freshness = FreshnessSerializer()


class SummarySerializer(PeriodSerializer):
    previous = PeriodSerializer(required=False, help_text=PREVIOUS_HELP)
    change = MetricsChangeSerializer(required=False, help_text=CHANGE_GROUP_HELP)


class BucketSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Bucket start (cut to the range).")
    end = serializers.DateTimeField(help_text="Bucket end, exclusive (cut to the range).")
    traffic = TrafficSerializer()
    performance = PerformanceSerializer()


class TimeseriesPointSerializer(BucketSerializer):
    previous = BucketSerializer(
        required=False,
        allow_null=True,
        help_text=PREVIOUS_HELP + " The compared bucket (previous_year: the one a calendar "
        "year earlier; previous_period: the one at the same position); null if there is none.",
    )
    change = MetricsChangeSerializer(
        required=False, allow_null=True, help_text=CHANGE_GROUP_HELP + " Null with `previous`."
    )


class ComparedRangeSerializer(RangeBodySerializer):
    freshness = FreshnessSerializer()


class TimeseriesBodySerializer(RangeBodySerializer):
    granularity = serializers.ChoiceField(choices=["hour", "interval", "day", "month", "year"])
    series = TimeseriesPointSerializer(many=True)
    freshness = FreshnessSerializer()
    previous = ComparedRangeSerializer(
        required=False, help_text="With `compare` only: the range compared with."
    )


class PageRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    site = serializers.IntegerField(help_text="Site id.")


class PageRowSerializer(serializers.Serializer):
    page = PageRefSerializer()
    traffic = TrafficSerializer()
    performance = PerformanceSerializer()


class PagesBodySerializer(RangeBodySerializer):
    order_by = serializers.CharField()
    freshness = FreshnessSerializer()
    count = serializers.IntegerField(help_text="Pages matching the filters in the range.")
    next = serializers.CharField(
        allow_null=True, help_text="Cursor of the following rows; null on the last page."
    )
    results = PageRowSerializer(many=True)


class PageDetailSerializer(PageRefSerializer):
    path = serializers.CharField()


class PageReportSerializer(PeriodSerializer):
    page = PageDetailSerializer()


# ------------------------------------------------------------------ identity and health


class RegisteredSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Access token (JWT): `Authorization: Bearer ...`.")
    refresh = serializers.CharField(help_text="Refresh token (JWT).")


class RefreshRequestSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    services = serializers.DictField(
        child=serializers.BooleanField(), help_text="`postgres` and `redis`: whether they answer."
    )


class LivenessSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    pid = serializers.IntegerField(help_text="The answering process.")


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    seconds = serializers.FloatField(help_text="How long the check took.")
    error = serializers.CharField(allow_null=True, help_text="Why it failed; null when ok.")


class BrokerCheckSerializer(CheckSerializer):
    broker = serializers.CharField(required=False, help_text="The broker (password masked).")


class WorkersCheckSerializer(CheckSerializer):
    queues = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Each stage queue and the answering workers that consume it.",
    )
    missing_queues = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Queues no worker answers for."
    )
    cached = serializers.BooleanField(
        required=False, help_text="Whether the workers' answer is a recent one reused."
    )
    age_seconds = serializers.FloatField(required=False, help_text="Age of that answer.")


class LagCheckSerializer(CheckSerializer):
    lag_seconds = serializers.FloatField(required=False, help_text="Age of the oldest work.")
    max_lag_seconds = serializers.FloatField(required=False, help_text="The threshold.")
    oldest_seconds = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text="Per stage with pending work, the age of its oldest dirty mark or batch.",
    )


class ReadinessChecksSerializer(serializers.Serializer):
    database = CheckSerializer()
    cache = CheckSerializer()
    broker = BrokerCheckSerializer()
    workers = WorkersCheckSerializer()
    lag = LagCheckSerializer()


class ReadinessSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    failing = serializers.ListField(
        child=serializers.ChoiceField(choices=["database", "cache", "broker", "workers", "lag"]),
        help_text="The checks that fail.",
    )
    checks = ReadinessChecksSerializer()


# ------------------------------------------------------------------ errors


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TokenErrorMessageSerializer(serializers.Serializer):
    token_class = serializers.CharField()
    token_type = serializers.CharField()
    message = serializers.CharField()


class AuthErrorSerializer(DetailSerializer):
    code = serializers.CharField(required=False, help_text="e.g. `token_not_valid`.")
    messages = TokenErrorMessageSerializer(many=True, required=False)


FIELD_ERRORS = {
    "type": "object",
    "description": "Each bad parameter or field (or `non_field_errors`) with its problems.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


def _error(description: str, serializer, example: dict) -> OpenApiResponse:
    return OpenApiResponse(
        serializer,
        description=description,
        examples=[OpenApiExample("error", value=example, response_only=True)],
    )


def bad_request(example: dict) -> OpenApiResponse:
    return _error("Bad parameters or fields: each one with its problems.", FIELD_ERRORS, example)


BAD_REQUEST = bad_request({"to": ["must be after from"]})
BAD_PAYLOAD = bad_request({"password": ["This password is too common."]})
UNAUTHORIZED = _error(
    "No valid access token or API key (nor a logged-in session).",
    AuthErrorSerializer,
    {"detail": "Authentication credentials were not provided."},
)
TOO_MANY = _error(
    "Rate limit exceeded; `Retry-After` gives the seconds until the window ends.",
    DetailSerializer,
    {"detail": "rate limit exceeded: 600 requests per window; retry in 42 s"},
)
NOT_FOUND = _error(
    "No such page, or one of a site you cannot read (the same answer).",
    DetailSerializer,
    {"detail": "No Page matches the given query."},
)
SITE_NOT_FOUND = _error(
    "No such site or page, or one you cannot read (the same answer).",
    DetailSerializer,
    {"detail": "No Site matches the given query."},
)
REGISTRATION_CLOSED = _error(
    "Registration is closed (METRIFLOW_OPEN_REGISTRATION off): staff create accounts.",
    DetailSerializer,
    {"detail": "registration is closed on this server: an account is created by staff, ..."},
)
REPORT_BUSY = _error(
    "Rate limit exceeded, or as many of your reports running as allowed at once "
    "(METRIFLOW_REPORT_CONCURRENCY); `Retry-After` gives the seconds to wait.",
    DetailSerializer,
    {"detail": "2 reports of yours are running, at most 2 at once; retry in 10 s"},
)
REPORT_TIMEOUT = _error(
    "The report ran past the statement timeout (METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS) "
    "and was stopped.",
    DetailSerializer,
    {"detail": "the report took longer than 10 s to compute and was stopped: ..."},
)
REPORT_ERRORS = {
    400: BAD_REQUEST,
    401: UNAUTHORIZED,
    404: SITE_NOT_FOUND,
    429: REPORT_BUSY,
    503: REPORT_TIMEOUT,
}

# ------------------------------------------------------------------ parameters

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the rate-limit window ends (or, for a report, until one "
    "of your running reports should be done).",
)

BOUND_PARAMETERS = [
    OpenApiParameter(
        name,
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=True,
        description=f"{side}. {BOUND_HELP}",
        pattern=BOUND_PATTERN,
        examples=[OpenApiExample(name, value=value)],
    )
    for name, side, value in (
        ("from", "Start, inclusive", "2025-01-01T00:00:00Z"),
        ("to", "End, exclusive", "2025-01-08T00:00:00Z"),
    )
]
FORMAT_PARAMETER = OpenApiParameter(
    "format",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    enum=["json", "csv"],
    description="`csv` streams the answer as CSV (nested fields flattened as "
    "`traffic.views`, `performance.both.lcp_ms.p75`); JSON otherwise.",
)
COMPARE_NOTE = (
    " `compare=previous_period` (the range of the same length that ends at `from`) or "
    "`previous_year` (each bound a calendar year earlier, Feb 29 on Feb 28) adds `previous`, "
    "the same metrics over that range with its own `from` and `to`, and `change`, "
    "(current - previous) / previous per metric, rounded to "
    f"{PRECISION['change']} decimals, null where the previous value is 0 or null or the "
    'current one is null (docs/api.md, "Period comparison").'
)
COMPARE_SERIES_NOTE = (
    " With `compare` each point carries `previous` (the compared bucket over the compared "
    "range at the same granularity: previous_year the bucket a calendar year earlier, "
    "previous_period the bucket at the same position; null if there is none) and `change`, "
    "the answer `previous` (the compared range), and METRIFLOW_MAX_BUCKETS counts the "
    "buckets of both ranges. CSV flattens them as `previous.traffic.views`, "
    "`change.traffic.views`, ..."
)
PAGE_ID_PARAMETER = OpenApiParameter(
    "page_id",
    {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    OpenApiParameter.PATH,
    description="The page's id (`page.id` in the top pages).",
)
CSV = OpenApiTypes.STR

# ------------------------------------------------------------------ examples


def _vital(p50, p75, p95, samples, good, needs, poor) -> dict:
    return {
        "p50": p50,
        "p75": p75,
        "p95": p95,
        "samples": samples,
        "good": good,
        "needs_improvement": needs,
        "poor": poor,
    }


def _strategy(samples: int, score: float, scale: float) -> dict:
    return {
        "samples": samples,
        "performance_score_avg": score,
        "lcp_ms": _vital(
            round(2237.7 * scale, 1),
            round(3104.2 * scale, 1),
            5012.9,
            samples,
            0.5625,
            0.3125,
            0.125,
        ),
        "fcp_ms": _vital(1402.6, 1873.9, 2940.1, samples, 0.71875, 0.25, 0.03125),
        "inp_ms": _vital(143.8, 212.4, 498.6, samples, 0.734375, 0.21875, 0.046875),
        "ttfb_ms": _vital(512.3, 734.0, 1490.8, samples, 0.8125, 0.171875, 0.015625),
        "cls": _vital(0.0612, 0.1043, 0.2318, samples, 0.71875, 0.25, 0.03125),
    }


EXAMPLE_TRAFFIC = {
    "users": 18234,
    "sessions": 21977,
    "views": 64120,
    "bounces": 9321,
    "engagement_seconds": 2860512.421875,
    "bounce_rate": 0.424125,
    "avg_engagement_seconds": 130.159,
    "views_per_session": 2.917596,
}
EXAMPLE_PERFORMANCE = {
    "mobile": _strategy(64, 71.328, 1.1),
    "desktop": _strategy(64, 83.516, 0.9),
    "both": _strategy(128, 77.422, 1.0),
}
EXAMPLE_FRESHNESS = {
    "pipeline_run_at": "2025-01-08T00:04:12.538Z",
    "pending": False,
    "quality": [
        {
            "batch": 12,
            "responses": 1,
            "rows": 1680,
            "first_hour": "2025-01-01T00:00:00Z",
            "last_hour": "2025-01-07T23:00:00Z",
            "data_loss_from_other_row": False,
            "subject_to_thresholding": True,
            "sampled": False,
        }
    ],
}
EXAMPLE_RANGE = {"from": "2025-01-01T00:00:00Z", "to": "2025-01-08T00:00:00Z"}
EXAMPLE_PAGE = {"id": 7, "url": "https://shop.example.com/products/kettle", "site": 2}


def example(name: str, value: dict) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=["200"])


SUMMARY_EXAMPLE = example(
    "A week",
    {
        **EXAMPLE_RANGE,
        "traffic": EXAMPLE_TRAFFIC,
        "performance": EXAMPLE_PERFORMANCE,
        "freshness": EXAMPLE_FRESHNESS,
    },
)
TIMESERIES_EXAMPLE = example(
    "Two days",
    {
        "from": "2025-01-01T00:00:00Z",
        "to": "2025-01-03T00:00:00Z",
        "granularity": "day",
        "series": [
            {
                "start": "2025-01-01T00:00:00Z",
                "end": "2025-01-02T00:00:00Z",
                "traffic": EXAMPLE_TRAFFIC,
                "performance": EXAMPLE_PERFORMANCE,
            },
            {
                "start": "2025-01-02T00:00:00Z",
                "end": "2025-01-03T00:00:00Z",
                "traffic": EXAMPLE_TRAFFIC,
                "performance": EXAMPLE_PERFORMANCE,
            },
        ],
        "freshness": EXAMPLE_FRESHNESS,
    },
)
PAGES_EXAMPLE = example(
    "The first of several pages",
    {
        **EXAMPLE_RANGE,
        "order_by": "-views",
        "freshness": EXAMPLE_FRESHNESS,
        "count": 12,
        "next": "bzox",
        "results": [
            {"page": EXAMPLE_PAGE, "traffic": EXAMPLE_TRAFFIC, "performance": EXAMPLE_PERFORMANCE}
        ],
    },
)
PAGE_EXAMPLE = example(
    "One page over a week",
    {
        "page": {**EXAMPLE_PAGE, "path": "/products/kettle"},
        **EXAMPLE_RANGE,
        "traffic": EXAMPLE_TRAFFIC,
        "performance": EXAMPLE_PERFORMANCE,
        "freshness": EXAMPLE_FRESHNESS,
    },
)
