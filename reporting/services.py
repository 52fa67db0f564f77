"""Writes of the reporting app: identity."""

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

REGISTRATION_CLOSED = (
    "registration is closed on this server: an account is created by staff, who (or a "
    "site admin) then give it access to sites"
)


def registration_open() -> bool:
    """Whether anyone may create an account (METRIFLOW_OPEN_REGISTRATION)."""
    return settings.METRIFLOW_OPEN_REGISTRATION


def register_user(*, username: str, password: str, email: str = ""):
    return get_user_model().objects.create_user(username=username, email=email, password=password)


def logout(*, refresh: str) -> None:
    """Blacklists a refresh token (raises TokenError when it is invalid or already used)."""
    token = RefreshToken(refresh)
    token.blacklist()


__all__ = ["REGISTRATION_CLOSED", "TokenError", "logout", "register_user", "registration_open"]
