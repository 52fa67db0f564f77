"""``LOGGING``: one stream handler on stderr for the web app, the workers and the commands.

``METRIFLOW_LOG_FORMAT`` is ``json`` (one JSON object per line, for a log collector) or
``console`` (readable lines); unset, it is ``console`` when DEBUG is on and ``json`` when it
is off. ``LOG_LEVEL`` is the root logger's level. docs/operations.md, "Logs".
"""

from django.core.exceptions import ImproperlyConfigured

LOG_FORMATS = ("json", "console")
_FORMATTERS = {"json": "observability.logs.JsonFormatter",
               "console": "observability.logs.ConsoleFormatter"}  # fmt: skip


def log_format(env, *, debug: bool) -> str:
    """The format ``METRIFLOW_LOG_FORMAT`` asks for, or the default for ``debug``."""
    value = env.str("METRIFLOW_LOG_FORMAT", default="") or ("console" if debug else "json")
    if value not in LOG_FORMATS:
        raise ImproperlyConfigured(f"METRIFLOW_LOG_FORMAT must be json or console, not {value!r}")
    return value


def logging_config(log_format: str, level: str) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {log_format: {"()": _FORMATTERS[log_format]}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": log_format},
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # Django's own handler mails admins and prints to the console; the root
            # handler is the one way out.
            "django": {"handlers": [], "propagate": True},
            "py.warnings": {"handlers": [], "propagate": True},
        },
    }


def to_file(config: dict, path: str) -> dict:
    """``config`` writing to the file ``path`` instead of stderr (a worker started with
    ``--logfile``, as ``--detach`` needs)."""
    handler = {**config["handlers"]["stderr"], "class": "logging.FileHandler", "filename": path}
    return {**config, "handlers": {**config["handlers"], "stderr": handler}}
