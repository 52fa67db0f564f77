"""Rate limits with django-ratelimit, counters in Redis (shared by every API process).

Applied to the handlers (not to ``dispatch``), so that on reports the key is
the JWT's user, authenticated by DRF before the handler runs; a request made
with an API key is counted per key, apart from its user's own requests. A limited call
gets 429 with ``Retry-After`` (seconds until the window ends) and a JSON body.

While Redis cannot be reached the limits of authenticated calls (reports, sites,
token refresh, logout) fail open: the request is served and a warning logged (at most
once per ``METRIFLOW_REDIS_WARN_SECONDS`` per process). They only read, every report
is bounded by its statement timeout, and refusing them would turn a cache outage into
an API outage. The limits that guard a password (token) or the creation of accounts
(register) fail closed: 503 with ``Retry-After``, so that an outage is no window for
guessing passwords.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.response import Response

from metriflow.cache import UNREACHABLE as REDIS_UNREACHABLE
from metriflow.cache import warn as warn_redis

# Limits that guard a password or the creation of accounts: without their counters
# the request is refused (503), not let through.
FAIL_CLOSED = frozenset({"auth-token", "auth-register", "auth-register-hourly"})
FAIL_CLOSED_RETRY_SECONDS = 30


def rate_limited(*, group: str, rate_setting: str, key: str):
    def decorate(handler):
        @functools.wraps(handler)
        def wrapped(view, request, *args, **kwargs):
            try:
                usage = get_usage(
                    request._request if hasattr(request, "_request") else request,
                    group=group,
                    key=_user_key if key == "user" else "ip",
                    rate=getattr(settings, rate_setting),
                    increment=True,
                )
            except REDIS_UNREACHABLE as exc:
                if group in FAIL_CLOSED:
                    warn_redis("rate-limits-closed", "%s refused, its rate limit's counters "
                               "cannot be reached (Redis): %s", group, exc)  # fmt: skip
                    response = Response(
                        {"detail": "temporarily unavailable: its rate limit cannot be "
                                   f"checked; retry in {FAIL_CLOSED_RETRY_SECONDS} s"},
                        status=503,
                    )  # fmt: skip
                    response["Retry-After"] = str(FAIL_CLOSED_RETRY_SECONDS)
                    return response
                warn_redis("rate-limits", "rate limits not enforced, their counters cannot be "
                           "reached (Redis): %s", exc)  # fmt: skip
                usage = None
            if usage and usage["should_limit"]:
                retry_after = max(1, int(usage["time_left"]))
                response = Response(
                    {
                        "detail": f"rate limit exceeded: {usage['limit']} requests per window; "
                        f"retry in {retry_after} s"
                    },
                    status=429,
                )
                response["Retry-After"] = str(retry_after)
                return response
            return handler(view, request, *args, **kwargs)

        return wrapped

    return decorate


def report_owner(request) -> str:
    """Whose reports a request's count among (rate limit and running reports)."""
    return _user_key(None, request)


def _user_key(group, request) -> str:
    # A credential with a bucket of its own (an API key: ``rate_limit_key``) is counted
    # apart from its user's other requests.
    credential_key = getattr(getattr(request, "auth", None), "rate_limit_key", None)
    if credential_key:
        return credential_key
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"
