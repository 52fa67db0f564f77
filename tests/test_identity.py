"""Identity: tokens outliving their user are refused (never a server error), each auth
endpoint has a rate bucket of its own, and no key signing tokens is a public one."""

from __future__ import annotations

import runpy
import secrets
import stat
import subprocess
import uuid

import pytest
import yaml
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from metriflow.settings.base import DEV_SECRET_KEY

from .conftest import REPO_ROOT, run_manage
from .factories import PASSWORD, UserFactory

SUMMARY = "/api/reports/summary?from=2024-01-01&to=2024-01-02"
PRODUCTION = {"DJANGO_SETTINGS_MODULE": "metriflow.settings.production"}


@pytest.fixture(autouse=True)
def separate_rate_counters(settings):
    """Each test counts its requests from zero (a key prefix of its own in Redis)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }


def tokens(client: APIClient, username: str) -> dict:
    response = client.post("/api/auth/token", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def refused_user_tokens(case: str) -> dict:
    """Access and refresh tokens, validly signed, of a user that is now ``case``."""
    if case == "unknown":  # an id no user ever had
        missing = (get_user_model().objects.order_by("-pk").values_list("pk", flat=True).first()
                   or 0) + 1000  # fmt: skip
        access, refresh = AccessToken(), RefreshToken()
        access["user_id"] = refresh["user_id"] = str(missing)
        return {"access": str(access), "refresh": str(refresh)}
    user = UserFactory()
    pair = tokens(APIClient(), user.username)
    assert bearer(pair["access"]).get(SUMMARY).status_code == 200  # caches the user row
    if case == "deleted":
        user.delete()
    else:
        user.is_active = False
        user.save()
    return pair


CASES = ["deleted", "inactive", "unknown"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_an_access_token_of_a_refused_user_is_401(case):
    response = bearer(refused_user_tokens(case)["access"]).get(SUMMARY)
    assert response.status_code == 401, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_a_refresh_token_of_a_refused_user_is_401_and_issues_nothing(case):
    pair = refused_user_tokens(case)
    outstanding = OutstandingToken.objects.count()
    response = APIClient().post("/api/auth/token/refresh", {"refresh": pair["refresh"]})
    assert response.status_code == 401, response.content
    assert response.json()["detail"] == "No active account found for the given token."
    assert OutstandingToken.objects.count() == outstanding  # no rotated token
    assert not BlacklistedToken.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_logout_with_a_refresh_token_of_a_refused_user_is_400(case):
    pair = refused_user_tokens(case)
    response = APIClient().post("/api/auth/logout", {"refresh": pair["refresh"]})
    assert response.status_code == 400, response.content
    assert "user does not exist or is inactive" in response.json()["refresh"][0]


@pytest.mark.django_db
def test_a_refresh_token_without_a_user_is_401():
    response = APIClient().post("/api/auth/token/refresh", {"refresh": str(RefreshToken())})
    assert response.status_code == 401, response.content


@pytest.mark.django_db
def test_register_token_refresh_and_logout_count_apart(settings):
    settings.METRIFLOW_RATE_AUTH = "2/h"
    user = UserFactory()
    client = APIClient()
    pair = tokens(client, user.username)
    wrong = {"username": user.username, "password": "wrong"}
    assert [client.post("/api/auth/token", wrong).status_code for _ in range(2)] == [401, 429]
    # Failed logins filled the token bucket; refreshing still works.
    first = client.post("/api/auth/token/refresh", {"refresh": pair["refresh"]})
    assert first.status_code == 200, first.content
    second = client.post("/api/auth/token/refresh", {"refresh": first.json()["refresh"]})
    assert second.status_code == 200
    third = client.post("/api/auth/token/refresh", {"refresh": second.json()["refresh"]})
    assert third.status_code == 429 and int(third["Retry-After"]) >= 1
    # ... and so do logout and register, each with a bucket of its own.
    latest = second.json()["refresh"]
    codes = [client.post("/api/auth/logout", {"refresh": latest}).status_code for _ in range(3)]
    assert codes == [205, 400, 429]  # the second is already blacklisted
    created = client.post("/api/auth/register", {"username": "newcomer", "password": PASSWORD})
    assert created.status_code == 201, created.content


@pytest.mark.django_db
def test_registration_is_also_limited_per_hour(settings):
    settings.METRIFLOW_RATE_AUTH = "100/m"
    settings.METRIFLOW_RATE_REGISTER = "2/h"
    client = APIClient()
    codes = [
        client.post("/api/auth/register", {"username": f"u{i}", "password": PASSWORD}).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]
    limited = client.post("/api/auth/register", {"username": "u9", "password": PASSWORD})
    assert limited.status_code == 429 and "2 requests per window" in limited.json()["detail"]
    assert int(limited["Retry-After"]) >= 1
    other_ip = APIClient(REMOTE_ADDR="10.0.0.9")
    assert (
        other_ip.post("/api/auth/register", {"username": "u8", "password": PASSWORD}).status_code
        == 201
    )
    # The per-minute bucket is the one METRIFLOW_RATE_AUTH sets, apart from the hourly one.
    settings.METRIFLOW_RATE_REGISTER = "100/h"
    assert (
        client.post("/api/auth/register", {"username": "u7", "password": PASSWORD}).status_code
        == 201
    )


# ------------------------------------------------------------------ signing keys


def _local_keys(key_file) -> list[str]:
    env = {"DJANGO_SETTINGS_MODULE": "metriflow.settings.local", "DJANGO_SECRET_KEY": "",
           "JWT_SIGNING_KEY": "", "DJANGO_SECRET_KEY_FILE": str(key_file)}  # fmt: skip
    code = "from django.conf import settings as s; print(s.SECRET_KEY, s.SIMPLE_JWT['SIGNING_KEY'])"
    return run_manage("shell", "--no-imports", "-c", code, env=env).stdout.split()


def test_local_settings_sign_with_a_random_key_of_the_checkout(tmp_path):
    key_file = tmp_path / "var" / "secret-key"
    secret, signing = _local_keys(key_file)
    assert secret == signing == key_file.read_text().strip()
    assert len(secret) >= 50 and secret != DEV_SECRET_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _local_keys(key_file) == [secret, secret]  # read thereafter, not made again
    other = _local_keys(tmp_path / "elsewhere" / "secret-key")
    assert other[0] != secret  # another checkout, another key
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secret-key"]


def test_the_checkout_key_is_kept_out_of_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret-key"], cwd=REPO_ROOT)
    assert ignored.returncode == 0


def test_an_explicit_secret_key_is_used_as_it_is(tmp_path):
    key = secrets.token_urlsafe(60)
    key_file = tmp_path / "secret-key"
    env = {"DJANGO_SETTINGS_MODULE": "metriflow.settings.local", "DJANGO_SECRET_KEY": key,
           "JWT_SIGNING_KEY": "", "DJANGO_SECRET_KEY_FILE": str(key_file)}  # fmt: skip
    code = "from django.conf import settings as s; print(s.SECRET_KEY)"
    assert run_manage("shell", "--no-imports", "-c", code, env=env).stdout.strip() == key
    assert not key_file.exists()


@pytest.mark.parametrize("signing_key", ["x", DEV_SECRET_KEY, secrets.token_urlsafe(60)[:49]])
def test_production_refuses_a_short_or_development_jwt_signing_key(signing_key):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
           "JWT_SIGNING_KEY": signing_key}  # fmt: skip
    result = run_manage("check", env=env, check=False)
    assert result.returncode != 0
    assert "JWT_SIGNING_KEY must be a random value of at least 50 characters" in result.stderr


def test_production_accepts_a_long_random_jwt_signing_key():
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
           "JWT_SIGNING_KEY": secrets.token_urlsafe(40)[:50]}  # fmt: skip
    result = run_manage("check", env=env, check=False)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ where the API listens


def test_gunicorn_listens_on_this_machine_only_by_default(monkeypatch):
    monkeypatch.delenv("GUNICORN_BIND", raising=False)
    config = runpy.run_path(str(REPO_ROOT / "metriflow" / "gunicorn.conf.py"))
    assert config["bind"] == "127.0.0.1:8080"
    monkeypatch.setenv("GUNICORN_BIND", "0.0.0.0:9000")
    assert runpy.run_path(str(REPO_ROOT / "metriflow" / "gunicorn.conf.py"))["bind"] == (
        "0.0.0.0:9000"
    )


def test_only_the_api_container_listens_on_every_interface():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    api = compose["services"]["api"]
    assert api["environment"]["GUNICORN_BIND"] == "0.0.0.0:8080"
    # The api keeps every variable the other services get.
    worker_env = compose["services"]["worker-raw"]["environment"]
    assert {k: v for k, v in api["environment"].items() if k != "GUNICORN_BIND"} == worker_env
    makefile = (REPO_ROOT / "Makefile").read_text()
    api_recipe = makefile.split("\napi:", 1)[1].split("\n\n", 1)[0]
    assert "0.0.0.0" not in api_recipe and "--bind" not in api_recipe
