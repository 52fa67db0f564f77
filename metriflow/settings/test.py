"""pytest: the real PostgreSQL, RabbitMQ and Redis, with a cache prefix of its own.

The secret key stays base.py's fixed development key (unless DJANGO_SECRET_KEY is set), so
that test runs are reproducible; the servers tests start listen on 127.0.0.1 only.
"""

from .base import *  # noqa: F403
from .base import CACHES, METRIFLOW_LOG_FORMAT, env
from .logs import logging_config

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = env.str("CACHE_KEY_PREFIX", default="metriflow-test")

# Tests drive the stages themselves; the end-to-end tests turn the trigger on
# for the processes they start.
METRIFLOW_PIPELINE_TRIGGER = env.bool("METRIFLOW_PIPELINE_TRIGGER", default=False)

# Warnings and errors only, unless LOG_LEVEL says otherwise: the commands and workers the
# tests start print what they print to a user; tests of the logs ask for INFO.
LOG_LEVEL = env.str("LOG_LEVEL", default="WARNING")
LOGGING = logging_config(METRIFLOW_LOG_FORMAT, LOG_LEVEL)
