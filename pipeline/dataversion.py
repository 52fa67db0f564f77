"""A counter in Redis that moves whenever the data behind reports changes.

The pipeline bumps it after every commit that changes what a report reads or
says (a stage window, the end of an ingest batch); the reporting API puts it
in every cache key. A cached answer is therefore never served after a change,
and checking costs one Redis read instead of database queries.
"""

from django.core.cache import cache

KEY = "data-version"


def current() -> int:
    return cache.get(KEY) or 0


def bump() -> int:
    try:
        return cache.incr(KEY)
    except ValueError:  # the key did not exist (first change, or Redis was flushed)
        cache.add(KEY, 0, timeout=None)
        return cache.incr(KEY)
