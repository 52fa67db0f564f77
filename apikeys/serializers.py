"""The bodies of /api/keys: the creation request, and a key as it is listed."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

NAME_LENGTH = 50  # AbstractAPIKey.name


class FlatListField(serializers.ListField):
    """A list whose items' errors come as one flat list (``item 3: ...``), like every other
    field's, rather than a map of positions."""

    def run_child_validation(self, data):
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError(
                [f"item {index}: {message}" for index, messages in exc.detail.items()
                 for message in messages]
            ) from None  # fmt: skip


class CreateKeySerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_LENGTH, help_text="A name of your choice.")
    sites = FlatListField(
        child=serializers.CharField(max_length=253),
        required=False,
        allow_empty=False,
        max_length=1000,
        help_text="Limit the key to these sites (hosts or ids), each one you can see. "
        "Left out: the key sees every site you can see.",
    )
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When the key stops working (UTC without a zone); left out: never.",
    )

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value


class SiteRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    host = serializers.CharField()


class ApiKeySerializer(serializers.Serializer):
    prefix = serializers.CharField(
        help_text="The key's visible start; `DELETE /api/keys/<prefix>` revokes it."
    )
    name = serializers.CharField()
    sites = SiteRefSerializer(
        many=True,
        allow_null=True,
        source="limited_sites",
        help_text="The sites the key is limited to; null: not limited.",
    )
    created = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(
        allow_null=True, help_text="Last use, updated at most once a minute."
    )
    revoked = serializers.BooleanField()


class KeyListSerializer(serializers.Serializer):
    keys = ApiKeySerializer(many=True, help_text="Newest first, revoked ones included.")


class CreatedKeySerializer(ApiKeySerializer):
    key = serializers.CharField(
        help_text="The key, shown this once only (stored as a hash): "
        "`Authorization: Api-Key <key>`."
    )
