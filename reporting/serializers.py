"""Input validation of the reporting API (parameters and identity payloads)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from . import comparison
from .ranges import unit_end, unit_start
from .selectors import GRANULARITY_LEVEL, ORDERINGS

# Bounds a range may take: far beyond any data, and clear of datetime's year 9999 limit,
# which the coarsest unit around a bound (a year) must stay inside.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# Ids are PostgreSQL integers.
MAX_ID = 2**31 - 1
# An ISO date, or a datetime on a whole hour, optionally with a zone (Z or +hh:mm).
BOUND_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:00(:00(\.0+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
BOUND_HELP = (
    "ISO date or datetime at hour precision, e.g. 2025-01-01 or 2025-01-01T06:00:00Z; "
    "without a zone it is UTC; between 1900-01-01 and 2200-01-01."
)


def parse_bound(text: str, name: str) -> datetime:
    """An ISO date or datetime at hour precision, as UTC (naive means UTC)."""
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise serializers.ValidationError(
            {name: f"not an ISO date or datetime: {text!r}"}
        ) from None
    if value.minute or value.second or value.microsecond:
        raise serializers.ValidationError({name: "must be on a whole hour (hour precision)"})
    if not EARLIEST <= value <= LATEST:
        raise serializers.ValidationError(
            {name: f"must be between {EARLIEST.date()} and {LATEST.date()}"}
        )
    return value


def bucket_count(granularity: str, start: datetime, end: datetime, cap: int) -> int:
    """Buckets of ``granularity`` over [start, end), counted up to ``cap + 1`` at most
    (a long range of hours is refused without listing each of its hours)."""
    hours = settings.METRIFLOW_INTERVAL_HOURS
    level = GRANULARITY_LEVEL[granularity]
    at, count = unit_start(level, start, hours), 0
    while at < end and count <= cap:
        count += 1
        at = unit_end(level, at, hours)
    return count


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
        buckets = bucket_count(attrs["granularity"], attrs["start"], attrs["end"], cap)
        compare, compared = attrs.get("compare"), ""
        if compare and buckets <= cap:  # the compared range's buckets count too
            previous = comparison.previous_range(compare, attrs["start"], attrs["end"])
            buckets += bucket_count(attrs["granularity"], *previous, cap - buckets)
            compared = " and the range it is compared with"
        if buckets > cap:
            raise serializers.ValidationError(
                {
                    "granularity": f"more than {cap} buckets in this range{compared}; at most "
                    f"{settings.METRIFLOW_MAX_BUCKETS} in one answer: use a coarser granularity "
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
