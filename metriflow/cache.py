"""Django's Redis cache backend, with one Redis client per connection pool.

The stock client builds a new ``redis.Redis`` object for every cache call
(about 0.1 ms each, most of it parsing options); a cached report makes four
such calls. A ``redis.Redis`` client is thread-safe and holds no connection of
its own (it borrows one from the pool per command), so one per pool is reused.
"""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


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
