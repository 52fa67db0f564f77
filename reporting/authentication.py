"""JWT authentication with the token's user read from Redis instead of PostgreSQL.

simplejwt loads the user row on every request (to refuse inactive or deleted
users): on a cached report that query was a third of the request's cost. The
user is kept in the Redis cache for ``METRIFLOW_AUTH_USER_CACHE_SECONDS``; a
save or delete of the user (the admin deactivating them, a password change)
drops the entry at once, in every API process, so the next request reads the
row again and an inactive user is refused. Only a bulk ``QuerySet.update``,
which sends no signal, waits for the entry to expire. While Redis cannot be
reached the cache is a miss (metriflow/cache.py): every request reads the row.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings


def user_key(user_id) -> str:
    return f"jwt-user:{user_id}"


class CachedUserJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token):
        user_id = validated_token.get(api_settings.USER_ID_CLAIM)
        if user_id is None or api_settings.CHECK_REVOKE_TOKEN:
            return super().get_user(validated_token)
        user = cache.get(user_key(user_id))
        if user is None:
            user = super().get_user(validated_token)  # refuses unknown and inactive users
            cache.set(user_key(user_id), user, settings.METRIFLOW_AUTH_USER_CACHE_SECONDS)
        return user


class CachedUserJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme: the same Bearer JWT as simplejwt's."""

    target_class = CachedUserJWTAuthentication


def forget_user(sender, instance, **kwargs) -> None:
    """post_save / post_delete of the user model: the cached row is stale."""
    cache.delete(user_key(getattr(instance, api_settings.USER_ID_FIELD)))
