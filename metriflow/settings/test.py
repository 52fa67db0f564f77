"""pytest: the real PostgreSQL, RabbitMQ and Redis, with a cache prefix of its own."""

from .base import *  # noqa: F403
from .base import CACHES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = "metriflow-test"
