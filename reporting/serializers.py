"""Input validation of the reporting API (parameters and identity payloads)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from .selectors import ORDERINGS, bucket_starts


def parse_bound(text: str, name: str) -> datetime:
    """An ISO date or datetime at hour precision, as UTC (naive means UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise serializers.ValidationError(
            {name: f"not an ISO date or datetime: {text!r}"}
        ) from None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value.minute or value.second or value.microsecond:
        raise serializers.ValidationError({name: "must be on a whole hour (hour precision)"})
    return value


class RangeSerializer(serializers.Serializer):
    from_ = serializers.CharField(help_text="Start, inclusive: ISO date or datetime (UTC).")
    to = serializers.CharField(help_text="End, exclusive: ISO date or datetime (UTC).")
    site = serializers.IntegerField(required=False, min_value=1, help_text="Site id.")
    page = serializers.IntegerField(required=False, min_value=1, help_text="Page id.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs):
        start = parse_bound(attrs["from"], "from")
        end = parse_bound(attrs["to"], "to")
        if start >= end:
            raise serializers.ValidationError({"to": "must be after from"})
        attrs["start"], attrs["end"] = start, end
        return attrs


class TimeseriesSerializer(RangeSerializer):
    granularity = serializers.ChoiceField(choices=["hour", "interval", "day", "month", "year"])

    def validate(self, attrs):
        attrs = super().validate(attrs)
        buckets = len(bucket_starts(attrs["granularity"], attrs["start"], attrs["end"]))
        if buckets > settings.METRIFLOW_MAX_BUCKETS:
            raise serializers.ValidationError(
                {
                    "granularity": f"{buckets} buckets in this range; at most "
                    f"{settings.METRIFLOW_MAX_BUCKETS} in one answer: use a coarser granularity "
                    "or a shorter range"
                }
            )
        return attrs


class PagesSerializer(RangeSerializer):
    path_prefix = serializers.CharField(required=False, help_text="Only paths starting so.")
    order_by = serializers.ChoiceField(
        choices=[*ORDERINGS, *(f"-{k}" for k in ORDERINGS)], default="-views"
    )
    limit = serializers.IntegerField(required=False, min_value=1, default=20)
    cursor = serializers.CharField(required=False, help_text="From the previous page's `next`.")

    def validate_limit(self, value):
        if value > settings.METRIFLOW_MAX_PAGE_SIZE:
            raise serializers.ValidationError(f"at most {settings.METRIFLOW_MAX_PAGE_SIZE}")
        return value


class PageRangeSerializer(serializers.Serializer):
    from_ = serializers.CharField()
    to = serializers.CharField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    validate = RangeSerializer.validate


class RegisterSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
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
