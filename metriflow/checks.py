"""Start-up checks: the fast native parts Metriflow relies on must be in use.

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
