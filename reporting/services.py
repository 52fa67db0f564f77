"""Writes of the reporting app: identity."""

from django.contrib.auth import get_user_model
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken


def register_user(*, username: str, password: str, email: str = ""):
    return get_user_model().objects.create_user(username=username, email=email, password=password)


def logout(*, refresh: str) -> None:
    """Blacklists a refresh token (raises TokenError when it is invalid or already used)."""
    token = RefreshToken(refresh)
    token.blacklist()


__all__ = ["TokenError", "logout", "register_user"]
