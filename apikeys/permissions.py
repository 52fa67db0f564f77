"""Permissions about API keys."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from .models import ApiKey


def is_api_key(request) -> bool:
    return isinstance(getattr(request, "auth", None), ApiKey)


class NotApiKey(BasePermission):
    """Refuses requests authenticated with an API key (403): keys are managed by the
    user in person, with a password login (a Bearer token or a session)."""

    message = "API keys cannot create, list or revoke API keys: log in with your password."

    def has_permission(self, request, view) -> bool:
        return not is_api_key(request)
