"""Sites as objects: their name and time zone, the admin, `manage.py sites`, a site
admin's members API, strict report parameters and the registration policy."""

from __future__ import annotations

import os
import secrets
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import Membership, Role
from pipeline.ingest import ingest_files
from pipeline.models import Site

from .conftest import run_manage
from .contract import generate
from .factories import MembershipFactory, SiteFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.usefixtures("pipeline_db")
RANGE = "from=2025-01-01&to=2025-01-02"


@pytest.fixture(autouse=True)
def own_cache(settings):
    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# ------------------------------------------------------------------ the site


def test_ingest_creates_sites_with_the_new_columns_defaults(tmp_path):
    generate(tmp_path, "--records", "200", "--pages", "4", "--sites", "2")
    ingest_files([str(tmp_path / "ga.json")], parallel=1, show_progress=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT host, name, time_zone, created_at IS NOT NULL FROM site")
        rows = cursor.fetchall()
    assert len(rows) == 2
    assert all(name == "" and zone == "UTC" and created for _, name, zone, created in rows)
    site = Site.objects.order_by("host").first()
    assert site.display_name == site.host  # no name given: shown by its host


def test_a_site_inserted_through_the_orm_gets_its_creation_time_from_the_database():
    site = SiteFactory(host="orm.example.com")
    assert site.created_at is not None and site.time_zone == "UTC"
    assert Site.objects.get(host="orm.example.com").created_at == site.created_at


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "europe/paris", "", "../etc/passwd"])
def test_a_time_zone_must_be_an_iana_name(zone):
    site = SiteFactory.build(host="tz.example.com", time_zone=zone)
    with pytest.raises(ValidationError) as error:
        site.full_clean(exclude=["created_at"])
    assert "time_zone" in error.value.message_dict


def test_a_site_with_a_time_zone_is_valid():
    SiteFactory.build(host="tz.example.com", time_zone="Europe/Paris").full_clean(
        exclude=["created_at"]
    )


def test_staff_edit_name_and_time_zone_in_the_admin_with_members_inline(client):
    site = SiteFactory(host="shop.example.com")
    ann = UserFactory(username="ann")
    MembershipFactory(user=ann, site=site, role=Role.ADMIN)
    root = StaffFactory(username="root", is_superuser=True)
    client.force_login(root)
    url = reverse("admin:pipeline_site_change", args=[site.pk])
    page = client.get(url).content.decode()
    assert 'name="time_zone"' in page and 'name="name"' in page
    assert '<select name="time_zone"' in page and '<option value="Europe/Paris">' in page
    assert '<input type="text" name="name"' in page  # one line, not a text area
    assert 'name="host"' not in page  # the host is the contract's site: read-only
    assert "members (viewers and admins" in page.lower() and "ann" in page
    form = {
        "name": "The Shop",
        "time_zone": "Europe/Paris",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": str(Membership.objects.get().pk),
        "memberships-0-site": str(site.pk),
        "memberships-0-user": str(ann.pk),
        "memberships-0-role": "viewer",
    }
    bad = client.post(url, {**form, "time_zone": "Nowhere/City"})
    assert bad.status_code == 200 and "is not an IANA time zone name" in bad.content.decode()
    assert client.post(url, form).status_code == 302
    site.refresh_from_db()
    assert (site.host, site.name, site.time_zone) == ("shop.example.com", "The Shop",
                                                      "Europe/Paris")  # fmt: skip
    assert Membership.objects.get().role == "viewer"  # the inline edits memberships
    user_page = client.get(reverse("admin:auth_user_change", args=[ann.pk])).content.decode()
    assert "sites (staff see every site)" in user_page.lower()
    assert "shop.example.com" in user_page


def test_non_staff_cannot_edit_a_site(client):
    site = SiteFactory()
    client.force_login(UserFactory())
    response = client.get(reverse("admin:pipeline_site_change", args=[site.pk]))
    assert response.status_code == 302  # to the admin's login


# ------------------------------------------------------------------ manage.py sites


def test_sites_command_grants_lists_and_revokes(capsys):
    site = SiteFactory(host="shop.example.com", name="Shop")
    SiteFactory(host="blog.example.com")
    UserFactory(username="ann")
    call_command("sites", "grant", "ann", "shop.example.com", "--role", "admin")
    assert Membership.objects.get().role == "admin"
    call_command("sites", "grant", "ann", "shop.example.com", "--role", "viewer")
    assert Membership.objects.get().role == "viewer"  # the role is replaced, not doubled
    call_command("sites", "list")
    out = capsys.readouterr().out
    assert "blog.example.com  id" in out and "no members (staff only)" in out
    assert f"shop.example.com (Shop)  id {site.pk}  time zone UTC\n  ann  viewer" in out
    call_command("sites", "revoke", "ann", "shop.example.com")
    assert not Membership.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("grant", "nobody", "shop.example.com"), "no user named 'nobody'"),
        (("grant", "ann", "nosuch.example.com"), "no site with host 'nosuch.example.com'"),
        (("revoke", "ann", "shop.example.com"), "'ann' is not a member of shop.example.com"),
    ],
)
def test_sites_command_names_what_is_unknown(args, message):
    SiteFactory(host="shop.example.com")
    UserFactory(username="ann")
    with pytest.raises(CommandError) as error:
        call_command("sites", *args)
    assert str(error.value) == message


def test_sites_command_as_a_user_runs_it(test_database_env):
    SiteFactory(host="shop.example.com")
    UserFactory(username="ann")
    result = run_manage("sites", "grant", "ann", "nosuch.example.com", env=test_database_env,
                        check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: no site with host 'nosuch.example.com'"
    result = run_manage("sites", "grant", "ann", "shop.example.com", "--role", "owner",
                        env=test_database_env, check=False)  # fmt: skip
    assert result.returncode == 2 and "invalid choice: 'owner'" in result.stderr


# ------------------------------------------------------------------ members API


@pytest.fixture
def shop():
    site = SiteFactory(host="shop.example.com")
    people = {name: UserFactory(username=name) for name in ("ann", "bob", "cat", "dan")}
    MembershipFactory(user=people["ann"], site=site, role=Role.ADMIN)
    MembershipFactory(user=people["bob"], site=site, role=Role.VIEWER)
    MembershipFactory(user=people["dan"], site=site, role=Role.ADMIN)
    SiteFactory(host="blog.example.com")
    return site, people


def test_a_site_admin_manages_the_site_viewers(shop):
    _, people = shop
    ann = client_of(people["ann"])
    members = "/api/sites/shop.example.com/members"
    listed = ann.get(members).json()["members"]
    assert [(m["username"], m["role"]) for m in listed] == [
        ("ann", "admin"), ("bob", "viewer"), ("dan", "admin")
    ]  # fmt: skip
    granted = ann.post(members, {"username": "cat"}, format="json")
    assert granted.status_code == 201 and granted.json()["role"] == "viewer"
    again = ann.post(members, {"username": "cat", "role": "viewer"}, format="json")
    assert again.status_code == 200
    # cat reads the site from the next request
    assert [s["host"] for s in client_of(people["cat"]).get("/api/sites").json()["sites"]] == [
        "shop.example.com"
    ]
    assert ann.delete(f"{members}/cat").status_code == 204
    assert client_of(people["cat"]).get("/api/sites").json()["sites"] == []
    assert not Membership.objects.filter(user=people["cat"]).exists()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("post", "", {"username": "cat", "role": "admin"}, 403, "only staff grant admin"),
        ("post", "", {"username": "dan", "role": "viewer"}, 403, "only staff change or remove"),
        ("delete", "/dan", None, 403, "only staff change or remove"),
        ("post", "", {"username": "zed"}, 400, "no user named 'zed'"),
        ("post", "", {"username": "cat", "role": "owner"}, 400, "not a valid choice"),
        ("delete", "/cat", None, 404, "'cat' is not a member of shop.example.com"),
    ],
)
def test_what_a_site_admin_may_not_do(shop, method, path, body, status, detail):
    site, people = shop
    response = getattr(client_of(people["ann"]), method)(
        f"/api/sites/shop.example.com/members{path}", body, format="json"
    )
    assert response.status_code == status and detail in str(response.json())
    assert Membership.objects.filter(site=site).count() == 3  # nothing changed


def test_a_viewer_gets_403_and_a_stranger_404_the_same_as_an_unknown_site(shop):
    site, people = shop
    bob, cat = client_of(people["bob"]), client_of(people["cat"])
    for client, status in ((bob, 403), (cat, 404)):
        assert client.get("/api/sites/shop.example.com/members").status_code == status
        post = client.post("/api/sites/shop.example.com/members", {"username": "cat"})
        assert post.status_code == status
        assert client.delete("/api/sites/shop.example.com/members/bob").status_code == status
    unknown = cat.get("/api/sites/nosuch.example.com/members")
    stranger = cat.get("/api/sites/shop.example.com/members")
    assert (unknown.status_code, unknown.json()) == (stranger.status_code, stranger.json())
    assert Membership.objects.filter(site=site).count() == 3


def test_staff_grant_and_revoke_admins(shop):
    _, people = shop
    root = client_of(StaffFactory())
    members = "/api/sites/blog.example.com/members"
    assert root.post(members, {"username": "cat", "role": "admin"}).status_code == 201
    assert Membership.objects.get(user=people["cat"]).role == "admin"
    assert root.delete("/api/sites/shop.example.com/members/dan").status_code == 204
    assert not Membership.objects.filter(user=people["dan"]).exists()


# ------------------------------------------------------------------ strict parameters


@pytest.fixture
def reader():
    site = SiteFactory(host="shop.example.com")
    user = UserFactory()
    MembershipFactory(user=user, site=site)
    return client_of(user)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        (f"/api/reports/summary?{RANGE}", "from, to, site, page"),
        (f"/api/reports/timeseries?{RANGE}&granularity=day", "from, to, site, page"),
        (f"/api/reports/pages?{RANGE}", "path_prefix, order_by, cursor, limit"),
        (f"/api/reports/pages/1?{RANGE}", "from, to, format"),
    ],
)
def test_an_unknown_parameter_is_a_400_naming_it(reader, url, accepted):
    response = reader.get(f"{url}&sites=2&foo=")
    assert response.status_code == 400
    problems = response.json()["unknown"]
    assert problems[0].startswith("parameter 'sites' is not accepted; accepted: ")
    assert problems[1].startswith("parameter 'foo' is not accepted; accepted: ")
    assert accepted in problems[0] and problems[0].endswith("format")


def test_format_and_empty_fields_of_the_form_are_accepted(reader):
    csv = reader.get(f"/api/reports/summary?{RANGE}&format=csv")
    assert csv.status_code == 200 and csv["Content-Type"] == "text/csv"
    form = reader.get(f"/api/reports/pages?{RANGE}&site=&page=&path_prefix=&cursor=&limit=")
    assert form.status_code == 200


def test_an_unknown_site_or_page_is_a_404_never_a_silent_default(reader):
    for query in ("site=999", "site=nosuch.example.com", "page=999"):
        response = reader.get(f"/api/reports/summary?{RANGE}&{query}")
        assert response.status_code == 404, query
    assert reader.get(f"/api/reports/summary?{RANGE}&site=0").status_code == 400


# ------------------------------------------------------------------ registration


def test_closed_registration_answers_403_with_a_reason(settings):
    settings.METRIFLOW_OPEN_REGISTRATION = False
    body = {"username": "newcomer", "password": "a-long-Passphrase-1"}
    response = APIClient().post("/api/auth/register", body, format="json")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("registration is closed on this server")
    assert not get_user_model().objects.filter(username="newcomer").exists()
    settings.METRIFLOW_OPEN_REGISTRATION = True
    assert APIClient().post("/api/auth/register", body, format="json").status_code == 201


@pytest.mark.parametrize(
    ("module", "expected"),
    [("metriflow.settings.production", "False"), ("metriflow.settings.local", "True")],
)
def test_registration_is_closed_by_default_in_production_only(module, expected):
    env = {"DJANGO_SETTINGS_MODULE": module, "DJANGO_SECRET_KEY": secrets.token_urlsafe(60)}
    os_env = {k: v for k, v in os.environ.items() if k != "METRIFLOW_OPEN_REGISTRATION"}
    code = "from django.conf import settings; print(settings.METRIFLOW_OPEN_REGISTRATION)"
    result = run_manage("shell", "--no-imports", "-c", code, env={**os_env, **env})
    assert result.stdout.strip() == expected
