"""Input validation of the reporting API (parameters and identity payloads)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from . import comparison, services
from .ranges import unit_start
from .selectors import GRANULARITY_LEVEL, ORDERINGS

# Ids are PostgreSQL integers.
MAX_ID = 2**31 - 1
# An ISO date, or a datetime on a whole hour, optionally with a zone (Z or +hh:mm).
BOUND_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:00(:00(\.0+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"


def supported_range() -> tuple[datetime, datetime]:
    """The earliest and latest bound a range may take: the instants Metriflow ingests,
    [METRIFLOW_INGEST_TIME_FROM, METRIFLOW_INGEST_TIME_UNTIL), so a range's bounds lie in
    [from, until]. Far from datetime's year 1 and 9999, which the coarsest unit around
    a bound (a year) and a compared range must stay inside."""
    bounds = []
    for text in (settings.METRIFLOW_INGEST_TIME_FROM, settings.METRIFLOW_INGEST_TIME_UNTIL):
        value = datetime.fromisoformat(text)
        bounds.append(value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))
    return bounds[0], bounds[1]


_SUPPORTED = " and ".join(f"{bound:%Y-%m-%d %H:%M}" for bound in supported_range())
BOUND_HELP = (
    "ISO date or datetime at hour precision, e.g. 2025-01-01 or 2025-01-01T06:00:00Z; "
    f"without a zone it is UTC; between {_SUPPORTED} (UTC, both included)."
)


def parse_bound(text: str, name: str) -> datetime:
    """An ISO date or datetime at hour precision, as UTC (naive means UTC), inside the
    supported range (a bound whose offset takes it past year 1 or 9999 is outside it)."""
    earliest, latest = supported_range()
    outside = {name: f"must be between {earliest:%Y-%m-%d %H:%M} and {latest:%Y-%m-%d %H:%M} UTC"}
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise serializers.ValidationError(
            {name: f"not an ISO date or datetime: {text!r}"}
        ) from None
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise serializers.ValidationError(outside) from None
    if value.minute or value.second or value.microsecond:
        raise serializers.ValidationError({name: "must be on a whole hour (hour precision)"})
    if not earliest <= value <= latest:
        raise serializers.ValidationError(outside)
    return value


def bucket_count(granularity: str, start: datetime, end: datetime) -> int:
    """Buckets of ``granularity`` over [start, end) (the first and last may be cut),
    computed from the bounds: a long range is refused without listing its buckets."""
    if end <= start:
        return 0
    level = GRANULARITY_LEVEL[granularity]
    first = unit_start(level, start, settings.METRIFLOW_INTERVAL_HOURS)
    if level in ("year", "month"):
        months = 12 if level == "year" else 1
        span = (end.year - first.year) * 12 + end.month - first.month
        # The unit holding ``end`` is a bucket unless ``end`` is where it starts.
        whole_unit_end = unit_start(level, end, 1) == end
        return span // months + (0 if whole_unit_end else 1)
    unit = {"day": timedelta(days=1), "hour": timedelta(hours=1)}.get(
        level, timedelta(hours=settings.METRIFLOW_INTERVAL_HOURS)
    )
    return -(-(end - first) // unit)  # ceiling division


def _named_from(fields: dict) -> dict:
    """``from`` is a Python keyword: declared as ``from_``, named ``from``, kept first."""
    return {("from" if name == "from_" else name): field for name, field in fields.items()}


class RangeSerializer(serializers.Serializer):
    from_ = serializers.CharField(help_text=f"Start, inclusive. {BOUND_HELP}")
    to = serializers.CharField(help_text=f"End, exclusive. {BOUND_HELP}")
    site = serializers.CharField(
        required=False,
        max_length=253,
        help_text="Only this site: its host (e.g. shop.example.com) or its id "
        "(GET /api/sites lists them). Without it, every site you can read.",
    )
    page = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this page (its id)."
    )

    def get_fields(self):
        return _named_from(super().get_fields())

    def validate_site(self, value: str) -> str:
        """A host, or an id in digits (1 to 2^31 - 1); the view resolves it."""
        if value.isascii() and value.isdigit() and not 1 <= int(value) <= MAX_ID:
            raise serializers.ValidationError(f"a site id is from 1 to {MAX_ID}")
        return value

    def validate(self, attrs):
        start = parse_bound(attrs["from"], "from")
        end = parse_bound(attrs["to"], "to")
        if start >= end:
            raise serializers.ValidationError({"to": "must be after from"})
        attrs["start"], attrs["end"] = start, end
        return attrs


def compare_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=list(comparison.MODES),
        required=False,
        help_text="Also the same metrics over the range compared with (`previous`) and the "
        "relative change of each (`change`): `previous_period`, the range of the same length "
        "that ends at `from`; `previous_year`, the range one calendar year earlier (Feb 29 "
        'on Feb 28). docs/api.md, "Period comparison".',
    )


class SummaryRangeSerializer(RangeSerializer):
    compare = compare_field()


class TimeseriesSerializer(RangeSerializer):
    granularity = serializers.ChoiceField(
        choices=list(GRANULARITY_LEVEL),
        help_text="Bucket size; `interval` is METRIFLOW_INTERVAL_HOURS hours.",
    )
    compare = compare_field()

    def validate(self, attrs):
        attrs = super().validate(attrs)
        cap = settings.METRIFLOW_MAX_BUCKETS
        buckets = bucket_count(attrs["granularity"], attrs["start"], attrs["end"])
        compare, compared = attrs.get("compare"), ""
        if compare:  # the compared range's buckets count too
            previous = comparison.previous_range(compare, attrs["start"], attrs["end"])
            buckets += bucket_count(attrs["granularity"], *previous)
            compared = " and the range it is compared with"
        if buckets > cap:
            raise serializers.ValidationError(
                {
                    "granularity": f"more than {cap} buckets in this range{compared} "
                    f"({buckets}); at most {cap} in one answer: use a coarser granularity "
                    "or a shorter range"
                }
            )
        return attrs


class PagesSerializer(RangeSerializer):
    path_prefix = serializers.CharField(
        required=False, help_text="Only pages whose path starts with this."
    )
    order_by = serializers.ChoiceField(
        choices=[*ORDERINGS, *(f"-{k}" for k in ORDERINGS)],
        default="-views",
        help_text="The metric to order by, `-` for descending; ties by page id.",
    )
    cursor = serializers.CharField(
        required=False, help_text="The previous answer's `next`, for the following rows."
    )

    def get_fields(self):
        fields = super().get_fields()
        # The largest page follows the setting in force, not the one at import.
        fields["limit"] = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=settings.METRIFLOW_MAX_PAGE_SIZE,
            default=20,
            help_text=f"Rows in this answer, at most {settings.METRIFLOW_MAX_PAGE_SIZE}.",
        )
        return fields


class PageRangeSerializer(serializers.Serializer):
    from_ = serializers.CharField(help_text=f"Start, inclusive. {BOUND_HELP}")
    to = serializers.CharField(help_text=f"End, exclusive. {BOUND_HELP}")

    def get_fields(self):
        return _named_from(super().get_fields())

    validate = RangeSerializer.validate


class RegisterSerializer(serializers.Serializer):
    username = serializers.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
    )
    email = serializers.EmailField(required=False, allow_blank=True)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})

    def validate_username(self, value):
        if get_user_model().objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("this username is taken")
        return value

    def validate(self, attrs):
        user = get_user_model()(username=attrs["username"], email=attrs.get("email", ""))
        try:
            password_validation.validate_password(attrs["password"], user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, refusing (401) a token whose user was deleted, deactivated or
    never existed before anything is issued or blacklisted."""

    def validate(self, attrs):
        try:
            services.token_user(self.token_class(attrs["refresh"]))
        except services.TokenUserRefused:
            raise AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            ) from None
        return super().validate(attrs)
