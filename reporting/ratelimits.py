"""Rate limits with django-ratelimit, counters in Redis (shared by every API process).

Applied to the handlers (not to ``dispatch``), so that on reports the key is
the JWT's user, authenticated by DRF before the handler runs; a request made
with an API key is counted per key, apart from its user's own requests. A limited call
gets 429 with ``Retry-After`` (seconds until the window ends) and a JSON body.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.response import Response


def rate_limited(*, group: str, rate_setting: str, key: str):
    def decorate(handler):
        @functools.wraps(handler)
        def wrapped(view, request, *args, **kwargs):
            usage = get_usage(
                request._request if hasattr(request, "_request") else request,
                group=group,
                key=_user_key if key == "user" else "ip",
                rate=getattr(settings, rate_setting),
                increment=True,
            )
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
