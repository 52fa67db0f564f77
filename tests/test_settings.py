"""Configuration: production refuses unsafe settings; start-up checks catch slow fallbacks."""

import secrets

import pytest

from metriflow import checks

from .conftest import run_manage

PRODUCTION = {"DJANGO_SETTINGS_MODULE": "metriflow.settings.production"}


def test_production_refuses_the_development_secret_key():
    result = run_manage("check", env={**PRODUCTION, "DJANGO_SECRET_KEY": ""}, check=False)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_debug():
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(60), "DJANGO_DEBUG": "true"}
    result = run_manage("check", env=env, check=False)
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be off" in result.stderr


def test_production_deploy_check_is_clean():
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(60)}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_native_backends_are_in_use():
    assert checks.ijson_backend_name() == "yajl2_c"
    assert checks.psycopg_implementation() in {"c", "binary"}
    assert checks.native_backends() == []


@pytest.mark.parametrize(
    ("probe", "value", "error_id"),
    [
        ("ijson_backend_name", "python", "metriflow.E001"),
        ("psycopg_implementation", "python", "metriflow.E002"),
    ],
)
def test_start_up_check_refuses_pure_python_fallbacks(monkeypatch, probe, value, error_id):
    monkeypatch.setattr(checks, probe, lambda: value)
    assert [error.id for error in checks.native_backends()] == [error_id]
