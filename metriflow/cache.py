"""Django's Redis cache backend, with one Redis client per connection pool, that
treats a Redis it cannot reach as an empty cache.

The stock client builds a new ``redis.Redis`` object for every cache call
(about 0.1 ms each, most of it parsing options); a cached report makes four
such calls. A ``redis.Redis`` client is thread-safe and holds no connection of
its own (it borrows one from the pool per command), so one per pool is reused.

Redis holds nothing that PostgreSQL cannot answer again (report answers, the
JWT's user row, verified API keys), so while it cannot be reached (refused,
timed out: ``METRIFLOW_REDIS_CONNECT_TIMEOUT_SECONDS`` and
``METRIFLOW_REDIS_SOCKET_TIMEOUT_SECONDS`` in ``CACHES``) a read is a miss, a
write and a delete do nothing, and ``add`` adds nothing (returns False). The
loss is logged at WARNING at most once per ``METRIFLOW_REDIS_WARN_SECONDS`` per
process, not once per request. ``incr`` is left to fail (``redis`` raises): the
data version (pipeline/dataversion.py) must move after a change or fail loudly,
never be skipped; the rate limits (reporting/ratelimits.py) decide for
themselves what an unreachable counter means.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

#: What "Redis cannot be reached" is: refused, reset, timed out (redis-py's own).
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


class RateLimitedWarning:
    """Logs one warning per ``what`` at most once per ``METRIFLOW_REDIS_WARN_SECONDS``
    in this process; the count of the ones held back goes with the next."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, what: str, message: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(what)
            if last is not None and now - last < settings.METRIFLOW_REDIS_WARN_SECONDS:
                self._held[what] = self._held.get(what, 0) + 1
                return
            self._last[what] = now
            held = self._held.pop(what, 0)
        suffix = f" ({held} more since the last warning)" if held else ""
        logger.warning(message + suffix, *args)


warn = RateLimitedWarning()


def _unreachable(operation: str, exc: BaseException) -> None:
    warn(
        "unreachable",
        "Redis cannot be reached (%s: %s): cache reads miss and writes are skipped, "
        "answers come from PostgreSQL",
        operation,
        exc,
    )


class ReusingRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(
                connection_pool=self._get_connection_pool(write)
            )
        return client


class MetriflowRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

    def get(self, key, default=None, version=None):
        try:
            return super().get(key, default, version)
        except UNREACHABLE as exc:
            _unreachable("get", exc)
            return default

    def get_many(self, keys, version=None):
        try:
            return super().get_many(keys, version)
        except UNREACHABLE as exc:
            _unreachable("get_many", exc)
            return {}

    def has_key(self, key, version=None):
        try:
            return super().has_key(key, version)
        except UNREACHABLE as exc:
            _unreachable("has_key", exc)
            return False

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().add(key, value, timeout, version)
        except UNREACHABLE as exc:
            _unreachable("add", exc)
            return False

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            super().set(key, value, timeout, version)
        except UNREACHABLE as exc:
            _unreachable("set", exc)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().set_many(data, timeout, version)
        except UNREACHABLE as exc:
            _unreachable("set_many", exc)
            return list(data)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().touch(key, timeout, version)
        except UNREACHABLE as exc:
            _unreachable("touch", exc)
            return False

    def delete(self, key, version=None):
        try:
            return super().delete(key, version)
        except UNREACHABLE as exc:
            _unreachable("delete", exc)
            return False

    def delete_many(self, keys, version=None):
        try:
            super().delete_many(keys, version)
        except UNREACHABLE as exc:
            _unreachable("delete_many", exc)
