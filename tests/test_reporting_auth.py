"""Identity and rate limits of the reporting API."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import jwt
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from .processes import gunicorn

PASSWORD = "correct-Horse-battery-9"
SUMMARY = "/api/reports/summary?from=2024-01-01&to=2024-01-02"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def separate_rate_counters(settings):
    """Each test counts its requests from zero (a key prefix of its own in Redis)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }


def make_user(username="alice", **extra):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


def tokens(client: APIClient, username="alice") -> dict:
    response = client.post("/api/auth/token", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_register_then_token_then_report():
    client = APIClient()
    created = client.post("/api/auth/register", {"username": "bob", "password": PASSWORD})
    assert created.status_code == 201 and created.json()["username"] == "bob"
    pair = tokens(client, "bob")
    assert bearer(pair["access"]).get(SUMMARY).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "carol", "password": "123"}, "password"),  # too short, numeric
        ({"username": "carol", "password": "password"}, "password"),  # too common
        ({"username": "carol"}, "password"),
        ({"password": PASSWORD}, "username"),
    ],
)
def test_register_refuses_bad_input_with_reasons(payload, field):
    response = APIClient().post("/api/auth/register", payload)
    assert response.status_code == 400
    assert field in response.json()


def test_register_refuses_a_taken_username():
    make_user("dave")
    response = APIClient().post("/api/auth/register", {"username": "Dave", "password": PASSWORD})
    assert response.status_code == 400 and "taken" in json.dumps(response.json())


def test_reports_need_a_valid_token():
    make_user()
    assert APIClient().get(SUMMARY).status_code == 401
    assert bearer("not-a-token").get(SUMMARY).status_code == 401


def test_an_expired_token_is_refused():
    user = make_user()
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    response = bearer(str(token)).get(SUMMARY)
    assert response.status_code == 401


def test_a_token_signed_with_another_key_is_refused():
    user = make_user()
    claims = dict(AccessToken.for_user(user).payload)
    forged = jwt.encode(claims, "another-signing-key-of-thirty-two-bytes", algorithm="HS256")
    assert bearer(forged).get(SUMMARY).status_code == 401


def test_alg_none_is_refused():
    user = make_user()
    claims = dict(AccessToken.for_user(user).payload)

    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    assert bearer(unsigned).get(SUMMARY).status_code == 401


def test_refresh_rotates_and_a_used_refresh_token_is_refused():
    make_user()
    client = APIClient()
    first = tokens(client)
    rotated = client.post("/api/auth/token/refresh", {"refresh": first["refresh"]})
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first["refresh"]
    again = client.post("/api/auth/token/refresh", {"refresh": first["refresh"]})
    assert again.status_code == 401  # blacklisted after rotation
    assert bearer(rotated.json()["access"]).get(SUMMARY).status_code == 200


def test_logout_blacklists_the_refresh_token():
    make_user()
    client = APIClient()
    pair = tokens(client)
    assert client.post("/api/auth/logout", {"refresh": pair["refresh"]}).status_code == 205
    assert client.post("/api/auth/token/refresh", {"refresh": pair["refresh"]}).status_code == 401
    assert client.post("/api/auth/logout", {"refresh": pair["refresh"]}).status_code == 400


def test_an_inactive_user_is_refused_everywhere():
    user = make_user()
    client = APIClient()
    pair = tokens(client)
    assert bearer(pair["access"]).get(SUMMARY).status_code == 200  # the user row now cached
    user.is_active = False
    user.save()  # drops the cached row
    assert (
        client.post("/api/auth/token", {"username": "alice", "password": PASSWORD}).status_code
        == 401
    )
    assert bearer(pair["access"]).get(SUMMARY).status_code == 401
    assert client.post("/api/auth/token/refresh", {"refresh": pair["refresh"]}).status_code == 401


def test_staff_only_admin_refuses_report_users():
    make_user()
    client = APIClient()
    client.login(username="alice", password=PASSWORD)
    assert client.get("/admin/pipeline/pipelineledger/").status_code == 302


def test_report_rate_limit_is_per_user_with_retry_after(settings):
    settings.METRIFLOW_RATE_REPORTS = "3/h"
    make_user("alice")
    make_user("bob")
    alice = bearer(tokens(APIClient(), "alice")["access"])
    bob = bearer(tokens(APIClient(), "bob")["access"])
    assert [alice.get(SUMMARY).status_code for _ in range(3)] == [200, 200, 200]
    limited = alice.get(SUMMARY)
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert "rate limit" in limited.json()["detail"]
    assert bob.get(SUMMARY).status_code == 200  # a bucket of its own


def test_auth_rate_limit_is_per_ip(settings):
    settings.METRIFLOW_RATE_AUTH = "2/h"
    make_user()
    client = APIClient()
    codes = [
        client.post("/api/auth/token", {"username": "alice", "password": "wrong"}).status_code
        for _ in range(3)
    ]
    assert codes == [401, 401, 429]
    other_ip = APIClient(REMOTE_ADDR="10.0.0.9")
    assert (
        other_ip.post("/api/auth/token", {"username": "alice", "password": "wrong"}).status_code
        == 401
    )


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_rate_limit_counter_is_shared_by_several_api_processes(test_database_env):
    env = {**test_database_env, "METRIFLOW_RATE_AUTH": "6/h",
           "CACHE_KEY_PREFIX": f"gunicorn-{uuid.uuid4().hex}"}  # fmt: skip
    with gunicorn(env, workers=3) as url:
        codes = [_post(f"{url}/api/auth/token", {"username": "x", "password": "y"})
                 for _ in range(10)]  # fmt: skip
    # Ten requests spread over three worker processes, one counter: exactly six pass.
    assert codes.count(429) == 4, codes
    assert codes[:6] == [401] * 6


def test_a_deleted_user_is_refused_with_a_token_still_valid():
    user = make_user()
    pair = tokens(APIClient())
    assert bearer(pair["access"]).get(SUMMARY).status_code == 200
    user.delete()
    assert bearer(pair["access"]).get(SUMMARY).status_code == 401
