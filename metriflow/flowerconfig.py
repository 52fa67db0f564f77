"""Flower's settings: ``celery -A metriflow flower --conf=metriflow/flowerconfig.py``.

Flower executes this file and takes its module-level names as options.

- ``broker_api``: RabbitMQ's management API, derived from ``CELERY_BROKER_URL``
  (same user, password, host and vhost; port ``FLOWER_BROKER_API_PORT``,
  15672 by default), so the Broker tab shows every queue's depth. Set
  ``FLOWER_BROKER_API`` to override it.
- ``basic_auth``: Flower can revoke and rate-limit tasks, so it never runs open.
  ``FLOWER_BASIC_AUTH=user:password`` (comma-separated for several users). On a
  development machine (DEBUG on) without it, a random password is made once
  and kept in ``var/flower-credentials`` (outside git), and Flower logs where
  to read it; with DEBUG off Flower refuses to start without it.
- ``address`` / ``port``: ``FLOWER_ADDRESS`` (127.0.0.1 by default: only this
  machine; docker-compose sets 0.0.0.0) and ``FLOWER_PORT`` (5555).
"""

# Flower takes every top-level name that matches one of its options (tornado's
# "logging" among them), so everything but the options is imported under a
# private name.
import logging as _logging
import os as _os
import secrets as _secrets
from pathlib import Path as _Path
from urllib.parse import quote as _quote
from urllib.parse import unquote as _unquote
from urllib.parse import urlsplit as _urlsplit

from django.conf import settings as _settings

_logger = _logging.getLogger("metriflow.flower")


def _management_api_url(broker_url: str, port: int = 15672) -> str:
    """The management API of the RabbitMQ that ``broker_url`` names, with its credentials."""
    parts = _urlsplit(broker_url)
    user = _quote(_unquote(parts.username or "guest"), safe="")
    password = _quote(_unquote(parts.password or "guest"), safe="")
    return f"http://{user}:{password}@{parts.hostname or 'localhost'}:{port}/api/"


def _credentials() -> list[str]:
    configured = _os.environ.get("FLOWER_BASIC_AUTH", "").strip()
    if configured:
        return [pair.strip() for pair in configured.split(",") if pair.strip()]
    if not _settings.DEBUG:
        raise SystemExit(
            "Flower needs FLOWER_BASIC_AUTH=user:password (it can revoke tasks); refusing to "
            "start without authentication."
        )
    path = _Path(_settings.BASE_DIR) / "var" / "flower-credentials"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"admin:{_secrets.token_urlsafe(18)}\n")
        path.chmod(0o600)
    _logger.warning("Flower basic auth: user and password are in %s", path)
    return [path.read_text().strip()]


broker_api = _os.environ.get("FLOWER_BROKER_API") or _management_api_url(
    _settings.CELERY_BROKER_URL, int(_os.environ.get("FLOWER_BROKER_API_PORT", "15672"))
)
basic_auth = _credentials()
address = _os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(_os.environ.get("FLOWER_PORT", "5555"))
