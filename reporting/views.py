"""HTTP interface of the reporting API: views parse input and call selectors."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .selectors import service_health


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
        health = service_health()
        status = 200 if all(health.values()) else 503
        return Response({"ok": status == 200, "services": health}, status=status)
