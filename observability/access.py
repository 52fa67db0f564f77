"""Who may read ``/metrics``.

Allowed: a request with ``Authorization: Bearer <METRIFLOW_METRICS_TOKEN>`` (when the
token is set), one whose address (``REMOTE_ADDR``, the peer gunicorn sees) is in
``METRIFLOW_METRICS_ALLOWED_IPS``, and, with DEBUG on, one from this machine's
loopback. Anyone else gets 401 when they sent no token and 403 when the token
they sent is wrong, or when no way in is configured for them.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from django.conf import settings

logger = logging.getLogger(__name__)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def allowed_networks() -> tuple:
    return tuple(
        ipaddress.ip_network(value.strip(), strict=False)
        for value in settings.METRIFLOW_METRICS_ALLOWED_IPS
        if value.strip()
    )


def _address(request):
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None


def refusal(request) -> int | None:
    """None when ``request`` may read the metrics, else the status to answer (401, 403)."""
    token = settings.METRIFLOW_METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    bearer = given.strip() if scheme.lower() == "bearer" else ""
    if token and bearer and hmac.compare_digest(bearer.encode(), token.encode()):
        return None
    address = _address(request)
    try:
        networks = allowed_networks()
    except ValueError as exc:  # refused at start-up by observability.E001; closed here
        logger.error("METRIFLOW_METRICS_ALLOWED_IPS: %s", exc)
        networks = ()
    if address is not None:
        if any(address in network for network in networks):
            return None
        if settings.DEBUG and any(address in network for network in LOOPBACK):
            return None
    return 403 if bearer or not token else 401
