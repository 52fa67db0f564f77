"""Shared fixtures. Tests run against the real PostgreSQL, RabbitMQ and Redis."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def broker_vhost() -> Iterator[str]:
    """The whole run talks to a RabbitMQ vhost of its own, made now and deleted at
    the end: the queues it declares and the messages it publishes are its own,
    never those of a developer's workers (``make demo``) or of another run on
    the same broker. Workers and commands the tests start inherit it."""
    from metriflow.celery import app

    from .rabbitmq import fresh_vhost

    def use(url: str | None) -> None:
        if url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = url  # Celery reads it before its settings
        app.close()  # the connection pool, and the producer pool made from it
        app.__dict__.pop("amqp", None)

    previous = os.environ.get("CELERY_BROKER_URL")
    previous_setting = settings.CELERY_BROKER_URL
    with fresh_vhost() as url:
        settings.CELERY_BROKER_URL = url
        use(url)
        try:
            yield url
        finally:
            use(previous)
            settings.CELERY_BROKER_URL = previous_setting


def admin_conninfo(dbname: str = "postgres") -> str:
    """A libpq connection string to the test server, on another database."""
    db = settings.DATABASES["default"]
    parts = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": str(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "dbname": dbname,
    }
    if db.get("PASSWORD"):
        parts["password"] = db["PASSWORD"]
    return " ".join(f"{k}={v}" for k, v in parts.items())


def database_url(dbname: str) -> str:
    db = settings.DATABASES["default"]
    auth = db.get("USER") or "postgres"
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{dbname}"


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """An empty database of its own, dropped afterwards; yields its name."""
    name = f"metriflow_scratch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_manage(*args: str, env: dict[str, str] | None = None, check: bool = True):
    """Runs ``manage.py`` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


# Tables the pipeline writes; unmanaged by Django, so its test flush leaves them.
PIPELINE_TABLES = (
    "site, page, ingest_batch, ingest_reject, staged_ga, staged_psi, page_hour, "
    "agg_interval, agg_daily, agg_monthly, agg_yearly, agg_site_daily, pipeline_dirty, "
    "pipeline_ledger, pipeline_run, pipeline_task_failure, ingest_request"
)


def reset_pipeline_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits "
            "WHERE inhparent IN ('raw_ga'::regclass, 'raw_psi'::regclass)"
        )
        for (partition,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE "{partition}"')
        cursor.execute(f"TRUNCATE {PIPELINE_TABLES} RESTART IDENTITY CASCADE")
        # Empty staged tables are whole (a test may have simulated a crash).
        cursor.execute("INSERT INTO staged_marker DEFAULT VALUES ON CONFLICT DO NOTHING")


@pytest.fixture
def pipeline_db(transactional_db):
    """A committed-data database with the pipeline's tables empty before and after."""
    reset_pipeline_tables()
    yield
    reset_pipeline_tables()


@pytest.fixture
def test_database_env() -> dict[str, str]:
    """Environment for subprocesses (manage.py, workers) that must use the test database."""
    from django.db import connection

    return {"DATABASE_URL": database_url(connection.settings_dict["NAME"])}
