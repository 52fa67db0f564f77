"""Reads of API keys: a user's keys, the sites a key may be limited to, and the key
behind an ``Authorization: Api-Key`` header (verified once, then kept briefly in Redis)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Q, QuerySet

from accounts.selectors import visible_site_ids
from pipeline.models import Site
from reporting.authentication import user_key
from reporting.serializers import MAX_ID

from .models import ApiKey


class KeyRefused(Exception):
    """The key cannot authenticate; the message says why (for the 401 body)."""


def keys_of(user) -> QuerySet[ApiKey]:
    """The user's keys, newest first, revoked ones included."""
    return ApiKey.objects.filter(user=user).prefetch_related("sites").order_by("-created")


def sites_user_can_see(user) -> QuerySet[Site]:
    """The sites a user may limit a key to: the sites the user reads (all for staff, the
    sites of their memberships otherwise; accounts.selectors)."""
    ids = visible_site_ids(user)
    return Site.objects.all() if ids is None else Site.objects.filter(pk__in=ids)


def resolve_sites(user, values: Iterable[str]) -> tuple[list[Site], list[str]]:
    """The sites named by ``values`` (hosts or ids) among those the user can see, and the
    values that name none of them (unknown and not visible alike)."""
    values = [str(v).strip() for v in values]
    ids = {int(v) for v in values if v.isdigit() and 0 < int(v) <= MAX_ID}
    hosts = {v.lower() for v in values if not v.isdigit()}
    found = list(sites_user_can_see(user).filter(Q(pk__in=ids) | Q(host__in=hosts)))
    known_ids = {site.pk for site in found}
    known_hosts = {site.host for site in found}
    missing = [
        v for v in values if not ((v.isdigit() and int(v) in known_ids) or v.lower() in known_hosts)
    ]
    return found, missing


# ------------------------------------------------------------------ authentication


def cache_key(raw_key: str) -> str:
    """Where a verified key is kept: a SHA-256 of the key, never the key itself."""
    return "api-key:" + hashlib.sha256(raw_key.encode()).hexdigest()


def prefix_cache_key(prefix: str) -> str:
    """Which cache entry holds the key of this prefix (so that a save can drop it)."""
    return f"api-key-prefix:{prefix}"


def _verified_key(raw_key: str) -> ApiKey:
    prefix, dot, secret = raw_key.partition(".")
    if not dot or not secret or len(prefix) > 8:
        raise KeyRefused("Invalid API key.")
    key = (
        ApiKey.objects.filter(prefix=prefix)
        .prefetch_related("sites")  # kept with the cached key: site_ids needs no query
        .first()
    )
    if key is None or not key.is_valid(raw_key):
        raise KeyRefused("Invalid API key.")
    return key


def _active_user(user_id: int):
    """The key's user, read through the same Redis entry as a JWT's user (dropped on every
    save or delete of the user)."""
    user = cache.get(user_key(user_id))
    if user is None:
        user = get_user_model().objects.filter(pk=user_id).first()
        if user is None or not user.is_active:
            raise KeyRefused("The API key's user is inactive or deleted.")
        cache.set(user_key(user_id), user, settings.METRIFLOW_AUTH_USER_CACHE_SECONDS)
    if not user.is_active:
        raise KeyRefused("The API key's user is inactive or deleted.")
    return user


def authenticated_key(raw_key: str) -> ApiKey:
    """The usable key ``raw_key`` is, with its user; raises KeyRefused otherwise.

    A verified key is kept in Redis for ``METRIFLOW_API_KEY_CACHE_SECONDS`` under a
    SHA-256 of the key; saving or deleting the key (revoking it) drops the entry. Expiry
    is checked on every request against the clock, and the user through its own entry.
    """
    entry = cache_key(raw_key)
    key = cache.get(entry)
    if key is None:
        key = _verified_key(raw_key)
        timeout = settings.METRIFLOW_API_KEY_CACHE_SECONDS
        cache.set_many({entry: key, prefix_cache_key(key.prefix): entry}, timeout)
    if key.revoked:
        raise KeyRefused("The API key has been revoked.")
    if key.has_expired:
        raise KeyRefused("The API key has expired.")
    key.user = _active_user(key.user_id)
    return key


def forget_key(prefix: str) -> None:
    """Drops the cached copy of the key with this prefix, if any."""
    entry = cache.get(prefix_cache_key(prefix))
    cache.delete_many([prefix_cache_key(prefix), *([entry] if entry else [])])
