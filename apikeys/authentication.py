"""``Authorization: Api-Key <key>``: a user's long-lived, read-only credential.

Answers ``(key.user, key)``: ``request.auth`` is the ApiKey, whose ``site_ids``
the report scoping reads. An unknown, revoked or expired key, or one of an
inactive or deleted user, is refused with 401; a key used for anything but
GET, HEAD or OPTIONS with 403 (keys are read-only, for every view).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS

from . import selectors, services

KEYWORD = "Api-Key"


class ApiKeyAuthentication(BaseAuthentication):
    keyword = KEYWORD

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None  # another scheme, or none: not ours
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                f"Invalid Authorization header: expected `{self.keyword} <key>`, "
                "one key without spaces."
            )
        try:
            raw_key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        try:
            key = selectors.authenticated_key(raw_key)
        except selectors.KeyRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from None
        if request.method not in SAFE_METHODS:
            raise exceptions.PermissionDenied(
                "API keys are read-only: only GET, HEAD and OPTIONS are allowed."
            )
        services.record_use(key)
        return key.user, key

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme: Swagger UI's "Authorize" takes `Api-Key <key>`."""

    target_class = ApiKeyAuthentication
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} <key>`: a read-only API key (POST /api/keys).",
        }


def forget_key(sender, instance, **kwargs) -> None:
    """post_save / post_delete of a key, or a change of its sites: the cached copy is stale."""
    prefix = getattr(instance, "prefix", None)
    if prefix:
        selectors.forget_key(prefix)
