"""API keys: created once and stored hashed, listed, revoked, read-only, limited to sites,
rate-limited per key, against the real PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Membership
from apikeys import selectors
from apikeys.models import ApiKey
from pipeline import stages
from pipeline.ingest import ingest_files

from .contract import generate
from .factories import PASSWORD, ApiKeyFactory, MembershipFactory, SiteFactory, UserFactory

SUMMARY = "/api/reports/summary?from=2024-01-01&to=2024-01-02"
KEY_FIELDS = {"prefix", "name", "sites", "created", "expires_at", "last_used_at", "revoked"}
START = datetime(2024, 12, 30, tzinfo=UTC)
DATA_RANGE = {"from": "2024-12-30", "to": "2025-01-03"}


@pytest.fixture(autouse=True)
def separate_cache(settings):
    """Each test has Redis entries of its own (a key prefix of its own): rate counters,
    cached keys and users, last-use markers."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }
    settings.METRIFLOW_RATE_REPORTS = "100000/h"


def with_password(user) -> APIClient:
    """A client logged in as ``user`` with a JWT from the token endpoint."""
    client = APIClient()
    pair = client.post("/api/auth/token", {"username": user.username, "password": PASSWORD})
    assert pair.status_code == 200, pair.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")
    return client


def with_key(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def refused(response, status: int = 401) -> str:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    return response.json()["detail"]


# ------------------------------------------------------------------ the endpoints


@pytest.mark.django_db
def test_a_key_is_shown_once_and_stored_as_a_hash():
    user = UserFactory()
    client = with_password(user)
    created = client.post("/api/keys", {"name": "dashboard"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == KEY_FIELDS | {"key"}
    secret = body["key"]
    prefix, _, rest = secret.partition(".")
    assert body["prefix"] == prefix and len(rest) >= 32
    assert body["name"] == "dashboard" and body["sites"] is None and body["revoked"] is False
    row = ApiKey.objects.get(prefix=prefix)
    assert row.user == user
    # A hash, computed here independently, and the key in no column of the row.
    assert row.hashed_key == "sha512$$" + hashlib.sha512(secret.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM apikeys_apikey WHERE prefix = %s", [prefix])
        assert all(secret not in str(value) for value in cursor.fetchone())
    # Never again: the list has no key and no hash.
    listed = client.get("/api/keys").json()["keys"]
    assert [set(k) for k in listed] == [KEY_FIELDS]
    assert secret not in str(listed) and row.hashed_key not in str(listed)
    assert with_key(secret).get(SUMMARY).status_code == 200


@pytest.mark.django_db
def test_the_list_holds_the_users_own_keys_newest_first():
    user, other = UserFactory(), UserFactory()
    first = ApiKeyFactory(user=user, name="first")
    second = ApiKeyFactory(user=user, name="second", expiry_date=timezone.now() + timedelta(1))
    ApiKeyFactory(user=other)
    ApiKey.objects.filter(pk=first.pk).update(created=timezone.now() - timedelta(hours=1))
    listed = with_password(user).get("/api/keys").json()["keys"]
    assert [k["prefix"] for k in listed] == [second.prefix, first.prefix]
    assert listed[0]["expires_at"] is not None and listed[1]["expires_at"] is None
    assert listed[0]["last_used_at"] is None


@pytest.mark.django_db
def test_a_key_can_be_limited_to_sites_the_user_can_see():
    user = UserFactory()
    mine, also_mine, not_mine = SiteFactory(), SiteFactory(), SiteFactory()
    MembershipFactory(user=user, site=mine)
    MembershipFactory(user=user, site=also_mine)
    client = with_password(user)
    created = client.post(
        "/api/keys", {"name": "two", "sites": [mine.host, str(also_mine.pk)]}, format="json"
    )
    assert created.status_code == 201, created.content
    expected = sorted([mine, also_mine], key=lambda s: s.host)
    assert created.json()["sites"] == [{"id": s.pk, "host": s.host} for s in expected]
    assert ApiKey.objects.get(prefix=created.json()["prefix"]).site_ids == {
        mine.pk,
        also_mine.pk,
    }
    # Another's site and an unknown one are refused alike, each named; nothing is created.
    for sites in ([not_mine.host], [str(not_mine.pk)], ["nowhere.example.com"], [mine.host, "9"]):
        answer = client.post("/api/keys", {"name": "x", "sites": sites}, format="json")
        assert answer.status_code == 400, sites
        assert len(answer.json()["sites"]) == 1
    assert ApiKey.objects.filter(user=user).count() == 1
    # Staff may limit a key to any site.
    staff = UserFactory(is_staff=True)
    answer = with_password(staff).post("/api/keys", {"name": "s", "sites": [not_mine.host]},
                                       format="json")  # fmt: skip
    assert answer.status_code == 201 and answer.json()["sites"][0]["id"] == not_mine.pk
    assert ApiKeyFactory(user=user).site_ids is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": "x", "sites": []}, "sites"),
        ({"name": "x", "sites": ["ok.example.com", ""]}, "sites"),
        ({"name": "x", "sites": "one.example.com"}, "sites"),
        ({"name": "x", "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_creation_requests_get_their_reasons(payload, field):
    answer = with_password(UserFactory()).post("/api/keys", payload, format="json")
    assert answer.status_code == 400 and list(answer.json()) == [field], answer.content
    assert all(isinstance(m, str) for m in answer.json()[field])  # a flat list of reasons
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_revoking_stops_the_key_at_once_and_only_the_owner_can():
    user, other = UserFactory(), UserFactory()
    key = ApiKeyFactory(user=user)
    assert with_key(key.secret).get(SUMMARY).status_code == 200  # now cached in Redis
    assert cache.get(selectors.cache_key(key.secret)) is not None
    assert with_password(other).delete(f"/api/keys/{key.prefix}").status_code == 404
    assert with_key(key.secret).get(SUMMARY).status_code == 200
    assert with_password(user).delete("/api/keys/nokey").status_code == 404
    owner = with_password(user)
    assert owner.delete(f"/api/keys/{key.prefix}").status_code == 204
    assert cache.get(selectors.cache_key(key.secret)) is None  # dropped on save
    assert "revoked" in refused(with_key(key.secret).get(SUMMARY))
    assert owner.delete(f"/api/keys/{key.prefix}").status_code == 204  # again: no change
    assert [k["revoked"] for k in owner.get("/api/keys").json()["keys"]] == [True]


@pytest.mark.django_db
def test_keys_need_a_password_login_to_be_managed():
    user = UserFactory()
    key = ApiKeyFactory(user=user)
    as_key = with_key(key.secret)
    assert "cannot create, list or revoke" in refused(as_key.get("/api/keys"), 403)
    assert "read-only" in refused(as_key.post("/api/keys", {"name": "x"}, format="json"), 403)
    assert "read-only" in refused(as_key.delete(f"/api/keys/{key.prefix}"), 403)
    assert ApiKey.objects.filter(user=user, revoked=False).count() == 1
    assert refused(APIClient().get("/api/keys"))  # anonymous: 401
    # A session (the browsable API) manages keys like a JWT.
    session = APIClient()
    session.force_login(user)
    assert session.get("/api/keys").status_code == 200


# ------------------------------------------------------------------ authentication


@pytest.mark.django_db
def test_a_key_is_read_only_everywhere():
    key = ApiKeyFactory()
    client = with_key(key.secret)
    assert client.get(SUMMARY).status_code == 200
    assert client.head(SUMMARY).status_code == 200
    assert client.options(SUMMARY).status_code == 200
    for method in ("post", "put", "patch", "delete"):
        assert "read-only" in refused(getattr(client, method)(SUMMARY), 403), method


@pytest.mark.django_db
def test_revoked_expired_unknown_and_malformed_keys_are_refused_with_401():
    revoked = ApiKeyFactory(revoked=True)
    expired = ApiKeyFactory(expiry_date=timezone.now() - timedelta(seconds=1))
    alive = ApiKeyFactory()
    assert "revoked" in refused(with_key(revoked.secret).get(SUMMARY))
    assert "expired" in refused(with_key(expired.secret).get(SUMMARY))
    prefix, _, secret = alive.secret.partition(".")
    for unknown in (
        f"{prefix}.{'x' * len(secret)}",  # a real prefix, a wrong secret
        f"zzzzzzzz.{secret}",
        "nodot",
        "toolongprefix.abc",
        f"{prefix}.",
    ):
        assert refused(with_key(unknown).get(SUMMARY)) == "Invalid API key.", unknown
    for header in ("Api-Key", f"Api-Key {alive.secret} extra", "Api-Key  "):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert refused(client.get(SUMMARY)), header
    client = APIClient(HTTP_AUTHORIZATION="Api-Key cl\u00e9.x".encode().decode("latin-1"))
    assert refused(client.get(SUMMARY))
    assert with_key(alive.secret).get(SUMMARY).status_code == 200


@pytest.mark.django_db
def test_a_key_expires_while_it_is_cached():
    key = ApiKeyFactory(expiry_date=timezone.now() + timedelta(seconds=1))
    client = with_key(key.secret)
    assert client.get(SUMMARY).status_code == 200
    assert cache.get(selectors.cache_key(key.secret)) is not None
    time.sleep(1.1)
    assert "expired" in refused(client.get(SUMMARY))


@pytest.mark.django_db
def test_a_key_of_an_inactive_or_deleted_user_is_refused():
    user = UserFactory()
    key = ApiKeyFactory(user=user)
    other = ApiKeyFactory()
    client = with_key(key.secret)
    assert client.get(SUMMARY).status_code == 200  # key and user now cached
    user.is_active = False
    user.save()  # drops the cached user
    assert "inactive" in refused(client.get(SUMMARY))
    user.is_active = True
    user.save()
    assert client.get(SUMMARY).status_code == 200
    user.delete()
    assert refused(client.get(SUMMARY)) == "Invalid API key."
    assert with_key(other.secret).get(SUMMARY).status_code == 200


@pytest.mark.django_db
def test_last_used_at_is_written_at_most_once_per_period(settings):
    settings.METRIFLOW_API_KEY_USE_SECONDS = 2
    key = ApiKeyFactory()
    client = with_key(key.secret)
    before = timezone.now()
    assert client.get(SUMMARY).status_code == 200
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None and before <= first <= timezone.now()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get(SUMMARY).status_code == 200
    assert not [q for q in queries if "apikeys_apikey" in q["sql"]]  # no read, no write
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    time.sleep(2.1)
    assert client.get(SUMMARY).status_code == 200
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first
    assert with_password(key.user).get("/api/keys").json()["keys"][0]["last_used_at"] is not None


@pytest.mark.django_db
def test_a_verified_key_is_cached_under_a_hash_and_dropped_on_change():
    key = ApiKeyFactory(sites=[SiteFactory()])
    client = with_key(key.secret)
    assert client.get(SUMMARY).status_code == 200
    entry = selectors.cache_key(key.secret)
    assert entry.endswith(hashlib.sha256(key.secret.encode()).hexdigest())
    cached = cache.get(entry)
    assert cached.pk == key.pk and cached.site_ids == key.site_ids
    key.sites.add(SiteFactory())  # a change of its sites
    assert cache.get(entry) is None
    assert client.get(SUMMARY).status_code == 200
    assert cache.get(entry).site_ids == ApiKey.objects.get(pk=key.pk).site_ids
    ApiKey.objects.get(pk=key.pk).delete()
    assert cache.get(entry) is None
    assert refused(client.get(SUMMARY)) == "Invalid API key."


@pytest.mark.django_db
def test_timing_of_a_request_with_a_key_and_with_a_jwt(capsys):
    """Prints the in-process time of a cached report with each credential, and with the
    key verified on every request (its cache off): the median of interleaved requests.
    No assertion on time: a record for docs/api.md."""
    user = UserFactory()
    key = ApiKeyFactory(user=user)
    cases = {
        "jwt": (with_password(user), False),
        "api-key": (with_key(key.secret), False),
        "api-key, verified every time": (with_key(key.secret), True),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(600):
        for name, (client, uncached) in cases.items():
            if uncached:
                selectors.forget_key(key.prefix)
            start = time.perf_counter()
            assert client.get(SUMMARY).status_code == 200
            if round_ >= 50:  # after warming the report, the user and the key
                times[name].append((time.perf_counter() - start) * 1000)
    medians = {name: round(statistics.median(t), 3) for name, t in times.items()}
    with capsys.disabled():
        print("\nms per cached summary (median):", medians)


# ------------------------------------------------------------------ rate limits


@pytest.mark.django_db
def test_a_key_has_a_rate_limit_bucket_of_its_own(settings):
    settings.METRIFLOW_RATE_REPORTS = "3/h"
    user = UserFactory()
    key, other_key = ApiKeyFactory(user=user), ApiKeyFactory(user=user)
    jwt = with_password(user)
    assert [jwt.get(SUMMARY).status_code for _ in range(3)] == [200, 200, 200]
    assert jwt.get(SUMMARY).status_code == 429  # the user's bucket is full
    client = with_key(key.secret)
    assert [client.get(SUMMARY).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get(SUMMARY)
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 3600
    assert "rate limit" in limited.json()["detail"]
    assert with_key(other_key.secret).get(SUMMARY).status_code == 200  # each key its own


# ------------------------------------------------------------------ admin


@pytest.mark.django_db
def test_the_admin_lists_creates_once_and_revokes_keys(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    owner = UserFactory()
    site = SiteFactory()
    listed = ApiKeyFactory(user=owner, name="listed", sites=[site])
    client.force_login(staff)
    page = client.get(reverse("admin:apikeys_apikey_changelist")).content.decode()
    for text in (listed.prefix, "listed", owner.username, site.host):
        assert text in page
    assert listed.secret not in page  # (the hash is part of the library's primary key)
    created = client.post(
        reverse("admin:apikeys_apikey_add"),
        {"name": "from admin", "user": owner.pk, "sites": [site.pk], "expiry_date_0": "",
         "expiry_date_1": ""},
        follow=True,
    )  # fmt: skip
    assert created.status_code == 200
    made = ApiKey.objects.get(name="from admin")
    assert made.site_ids == {site.pk}
    [message] = [str(m) for m in created.context["messages"] if "API key for" in str(m)]
    secret = message.split("is: ")[1].split(". ")[0]
    assert secret.startswith(made.prefix + ".") and made.is_valid(secret)
    assert with_key(secret).get(SUMMARY).status_code == 200
    client.post(
        reverse("admin:apikeys_apikey_changelist"),
        {"action": "revoke", "_selected_action": [made.pk]},
    )
    assert ApiKey.objects.get(pk=made.pk).revoked
    assert refused(with_key(secret).get(SUMMARY))


# ------------------------------------------------------------------ sites, with real data


@pytest.fixture
def dataset(tmp_path, pipeline_db):
    generate(tmp_path, "--records", "1500", "--pages", "6", "--sites", "2",
             "--start", START.isoformat())  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()


def test_a_key_limited_to_a_site_reads_only_that_site(dataset):
    from pipeline.models import Page, Site

    user = UserFactory()
    first, second = Site.objects.order_by("pk")[:2]
    for site in (first, second):
        MembershipFactory(user=user, site=site)
    key = ApiKeyFactory(user=user, sites=[first])
    whole = ApiKeyFactory(user=user)
    jwt, limited = with_password(user), with_key(key.secret)
    url = "/api/reports/summary"
    only_first = jwt.get(url, {**DATA_RANGE, "site": first.pk}).json()
    both = jwt.get(url, DATA_RANGE).json()
    assert only_first["traffic"]["views"] < both["traffic"]["views"]
    # Without a site the limited key covers its site only; the unlimited key everything.
    assert limited.get(url, DATA_RANGE).json()["traffic"] == only_first["traffic"]
    assert with_key(whole.secret).get(url, DATA_RANGE).json()["traffic"] == both["traffic"]
    assert limited.get(url, {**DATA_RANGE, "site": first.pk}).status_code == 200
    assert limited.get(url, {**DATA_RANGE, "site": second.pk}).status_code == 404
    other_page = Page.objects.filter(site=second).first()
    own_page = Page.objects.filter(site=first).first()
    assert limited.get(f"/api/reports/pages/{other_page.pk}", DATA_RANGE).status_code == 404
    assert limited.get(f"/api/reports/pages/{own_page.pk}", DATA_RANGE).status_code == 200
    pages = limited.get("/api/reports/pages", {**DATA_RANGE, "limit": 500}).json()["results"]
    assert pages and {row["page"]["site"] for row in pages} == {first.pk}
    # The key narrows the user's sites, never widens them.
    Membership.objects.filter(user=user, site=first).delete()
    assert limited.get(url, {**DATA_RANGE, "site": first.pk}).status_code == 404
    assert limited.get(url, DATA_RANGE).json()["traffic"]["views"] == 0
