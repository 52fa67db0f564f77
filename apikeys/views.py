"""HTTP interface of API keys: create, list and revoke the user's own keys.

Only a user logged in with a password (a Bearer token or a session) manages
keys; a request made with a key is refused (403).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from reporting import openapi

from . import selectors, services
from .models import ApiKey
from .permissions import NotApiKey
from .serializers import (
    ApiKeySerializer,
    CreatedKeySerializer,
    CreateKeySerializer,
    KeyListSerializer,
)

# Keys cannot manage keys: these operations take a password login only.
PASSWORD_LOGIN = [{"jwtAuth": []}, {"cookieAuth": []}]
FORBIDDEN = OpenApiResponse(
    openapi.DetailSerializer,
    description="Made with an API key: keys cannot create, list or revoke keys.",
    examples=[
        OpenApiExample(
            "error",
            value={"detail": "API keys cannot create, list or revoke API keys: log in with "
                   "your password."},
            response_only=True,
        )
    ],
)  # fmt: skip
UNAUTHORIZED = openapi.UNAUTHORIZED
PREFIX = OpenApiParameter(
    "prefix",
    {"type": "string", "pattern": "^[A-Za-z0-9]{1,8}$"},
    OpenApiParameter.PATH,
    description="The key's prefix (`prefix` in the list).",
)


class KeysView(APIView):
    permission_classes = [IsAuthenticated, NotApiKey]

    @extend_schema(
        summary="Your API keys",
        description="Every key of yours, newest first, revoked ones included; never the key "
        "itself nor its hash.",
        tags=["keys"],
        auth=PASSWORD_LOGIN,
        responses={200: KeyListSerializer, 401: UNAUTHORIZED, 403: FORBIDDEN},
    )
    def get(self, request):
        return Response(KeyListSerializer({"keys": selectors.keys_of(request.user)}).data)

    @extend_schema(
        summary="Create an API key",
        description="A read-only key for the reports (`Authorization: Api-Key <key>`), "
        "optionally limited to some of your sites and with an expiry. The answer holds the "
        "key in `key`, this once only: only a hash of it is stored.",
        tags=["keys"],
        auth=PASSWORD_LOGIN,
        request=CreateKeySerializer,
        responses={
            201: CreatedKeySerializer,
            400: openapi.bad_request({"sites": ["no site you can see: 'shop.example.com'"]}),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
        },
    )
    def post(self, request):
        payload = CreateKeySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            key, secret = services.create_key(user=request.user, **payload.validated_data)
        except services.UnknownSites as unknown:
            return Response(
                {"sites": [f"no site you can see: {value!r}" for value in unknown.values]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        body = {**ApiKeySerializer(key).data, "key": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class KeyView(APIView):
    permission_classes = [IsAuthenticated, NotApiKey]

    @extend_schema(
        summary="Revoke an API key",
        description="The key stops working at once, for good. 404 for an unknown prefix or "
        "another user's key; revoking a revoked key changes nothing.",
        tags=["keys"],
        auth=PASSWORD_LOGIN,
        parameters=[PREFIX],
        responses={
            204: OpenApiResponse(description="Revoked (no body)."),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: OpenApiResponse(
                openapi.DetailSerializer, description="No key of yours has this prefix."
            ),
        },
    )
    def delete(self, request, prefix: str):
        try:
            services.revoke_key(user=request.user, prefix=prefix)
        except ApiKey.DoesNotExist:
            return Response({"detail": "No API key of yours has this prefix."}, status=404)
        return Response(status=status.HTTP_204_NO_CONTENT)
