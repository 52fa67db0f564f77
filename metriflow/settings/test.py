"""pytest: the real PostgreSQL, RabbitMQ and Redis, with a cache prefix of its own."""

from .base import *  # noqa: F403
from .base import CACHES, env

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = env.str("CACHE_KEY_PREFIX", default="metriflow-test")

# Tests drive the stages themselves; the end-to-end tests turn the trigger on
# for the processes they start.
METRIFLOW_PIPELINE_TRIGGER = env.bool("METRIFLOW_PIPELINE_TRIGGER", default=False)
