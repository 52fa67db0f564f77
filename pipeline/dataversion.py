"""A counter in Redis that moves whenever the data behind reports changes.

The pipeline bumps it after every commit that changes what a report reads or
says (a stage window, the end of an ingest batch); the reporting API puts it
in every cache key. A cached answer is therefore never served after a change,
and checking costs one Redis read instead of database queries.

When Redis has lost the counter (flushed, evicted, restarted empty) it starts
again from the clock in nanoseconds, not from 0: a version made anew is never
one an older cached answer was stored under. When Redis cannot be reached,
``current`` is None (nothing cached is trusted, nothing is stored) and
``bump`` logs a warning and returns None: the change is committed in
PostgreSQL, so neither a stage nor an ingest fails over it. The change is then
announced by the next bump that reaches Redis; until then a Redis that comes
back holding its data may serve an answer cached before the change, for at
most METRIFLOW_REPORT_CACHE_SECONDS (docs/reliability.md). A Redis that
restarts empty serves nothing stale: its version is made anew.
"""

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)

KEY = "data-version"


def _anew() -> None:
    cache.add(KEY, time.time_ns(), timeout=None)


def current() -> int | None:
    """The data version; made anew if Redis lost it; None if Redis cannot be reached."""
    version = cache.get(KEY)
    if version is None:
        _anew()
        version = cache.get(KEY)
    return version


def bump() -> int | None:
    try:
        try:
            return cache.incr(KEY)
        except ValueError:  # the key did not exist (first change, or Redis lost it)
            _anew()
            return cache.incr(KEY)
    except Exception as exc:  # Redis unreachable: the committed change stands
        logger.warning("data version not bumped, Redis unreachable: %s: %s",
                       type(exc).__name__, exc)  # fmt: skip
        return None
