"""Writes of API keys: creating, revoking, recording use."""

from __future__ import annotations

import math
import time
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from . import selectors
from .models import ApiKey


class UnknownSites(ValueError):
    """Some of the sites asked for are unknown or not visible to the user."""

    def __init__(self, values: list[str]):
        super().__init__(values)
        self.values = values


def create_key(
    *, user, name: str, sites: list[str] | None = None, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key of ``user`` and its secret, the only time the secret exists in clear.

    ``sites`` (hosts or ids) limits the key to those sites, each one the user can see;
    None leaves it unlimited (the user's own sites apply)."""
    chosen = None
    if sites is not None:
        chosen, missing = selectors.resolve_sites(user, sites)
        if missing:
            raise UnknownSites(missing)
    with transaction.atomic():
        key, secret = ApiKey.objects.create_key(
            user=user, name=name, expiry_date=expires_at, limited_to_sites=chosen is not None
        )
        if chosen:
            key.sites.set(chosen)
    return key, secret


def revoke_key(*, user, prefix: str) -> ApiKey:
    """Revokes the user's key with this prefix (again: no change); raises
    ApiKey.DoesNotExist for an unknown prefix or another user's key."""
    key = ApiKey.objects.get(user=user, prefix=prefix)
    if not key.revoked:
        key.revoked = True
        key.save(update_fields=["revoked"])  # post_save drops the cached copy
    return key


# When this process last recorded each key's use (time.monotonic()): most requests then
# touch neither Redis nor PostgreSQL for it.
_recorded: dict[str, float] = {}


def record_use(key: ApiKey) -> None:
    """Sets ``last_used_at``, at most once per ``METRIFLOW_API_KEY_USE_SECONDS`` per key:
    a Redis marker decides among the API processes, and each process asks it at most
    once per period (no write, and no Redis call, on most requests)."""
    period = settings.METRIFLOW_API_KEY_USE_SECONDS
    now = time.monotonic()
    if now - _recorded.get(key.prefix, -math.inf) < period:
        return
    _recorded[key.prefix] = now
    if cache.add(f"api-key-used:{key.prefix}", 1, period):
        # update(): no post_save, so the cached copy of the key stays.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
