"""Reads for the reporting API."""

from django.core.cache import cache
from django.db import connection


def service_health() -> dict[str, bool]:
    """Whether PostgreSQL and Redis answer."""
    health = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            health["postgres"] = cursor.fetchone() == (1,)
    except Exception:
        health["postgres"] = False
    try:
        health["redis"] = bool(cache._cache.get_client().ping())
    except Exception:
        health["redis"] = False
    return health
