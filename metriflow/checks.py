"""Start-up checks: the fast native parts Metriflow relies on must be in use, and the
task time limit must be below the broker's consumer timeout.

ijson silently falls back to a pure-Python parser, and psycopg to a
pure-Python libpq wrapper, when their compiled parts are missing; both are
several times slower. ``manage.py`` refuses to run in that state.
"""

from django.core import checks


def ijson_backend_name() -> str:
    import ijson

    return ijson.backend


def psycopg_implementation() -> str:
    import psycopg

    return psycopg.pq.__impl__


@checks.register()
def native_backends(app_configs=None, **kwargs):
    errors = []
    if ijson_backend_name() != "yajl2_c":
        errors.append(
            checks.Error(
                f"ijson uses the '{ijson_backend_name()}' backend, not 'yajl2_c'.",
                hint="Reinstall ijson from a wheel that ships its C extension.",
                id="metriflow.E001",
            )
        )
    if psycopg_implementation() == "python":
        errors.append(
            checks.Error(
                "psycopg runs its pure-Python implementation.",
                hint="Install psycopg[binary] (or psycopg[c]) as requirements.txt says.",
                id="metriflow.E002",
            )
        )
    return errors


@checks.register()
def task_time_limit_below_consumer_timeout(app_configs=None, **kwargs):
    """A task still running when RabbitMQ's ``consumer_timeout`` strikes has its
    delivery taken back: the worker connects again, cancels it and the message runs
    again from the start. The hard time limit must end a task before that."""
    from django.conf import settings

    limit = settings.CELERY_TASK_TIME_LIMIT
    timeout = settings.METRIFLOW_BROKER_CONSUMER_TIMEOUT_SECONDS
    if timeout and (not limit or limit >= timeout):
        return [
            checks.Warning(
                f"CELERY_TASK_TIME_LIMIT ({limit or 'none'} s) is not below the broker's "
                f"consumer timeout (METRIFLOW_BROKER_CONSUMER_TIMEOUT_SECONDS, {timeout} s).",
                hint="Lower CELERY_TASK_TIME_LIMIT, or raise RabbitMQ's consumer_timeout "
                "and METRIFLOW_BROKER_CONSUMER_TIMEOUT_SECONDS with it.",
                id="metriflow.W001",
            )
        ]
    return []
