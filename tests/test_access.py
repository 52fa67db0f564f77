"""Who reads what: every report and the sites endpoints, for every kind of principal.

Over real data (a generated data set of three sites taken through the stages),
each principal asks each endpoint about a site of its own, a site of someone
else, and no site at all; each answer is checked against an independent sum
over page_hour of only the sites that principal may read, and a site or page
it may not read must answer exactly as one that does not exist.

A principal is one row of ``PRINCIPALS``: how to build its client from the
world, and which sites it may read (``None``: every site). A new kind of
credential (an API key limited to a site, a revoked key) is one more row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from pipeline import stages
from pipeline.ingest import ingest_files
from pipeline.models import Page, Site

from .contract import generate
from .factories import ApiKeyFactory, MembershipFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.usefixtures("pipeline_db")
START = datetime(2024, 12, 30, tzinfo=UTC)
RANGE = "from=2024-12-30&to=2025-01-03"
BOUNDS = (START, datetime(2025, 1, 3, tzinfo=UTC))
NO_SITE = {"detail": "No Site matches the given query."}
NO_PAGE = {"detail": "No Page matches the given query."}


@dataclass
class World:
    sites: list[Site]  # by id: three sites with data
    users: dict[str, object]


@dataclass
class Principal:
    client: APIClient
    visible: frozenset[int] | None  # None: every site
    refused: int | None = None  # a status every answer has (a revoked credential: 401)


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def admin_of_first(world: World) -> Principal:
    return Principal(_client(world.users["ann"]), frozenset({world.sites[0].pk}))


def viewer_of_second(world: World) -> Principal:
    return Principal(_client(world.users["bob"]), frozenset({world.sites[1].pk}))


def staff(world: World) -> Principal:
    return Principal(_client(world.users["staff"]), None)


def no_site(world: World) -> Principal:
    return Principal(_client(world.users["nobody"]), frozenset())


def anonymous(world: World) -> Principal:
    return Principal(APIClient(), frozenset(), refused=401)


def _key_client(**key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {ApiKeyFactory(**key).secret}")
    return client


def staff_key_limited_to_third(world: World) -> Principal:
    client = _key_client(user=world.users["staff"], sites=[world.sites[2]])
    return Principal(client, frozenset({world.sites[2].pk}))


def admin_key_limited_to_own_site(world: World) -> Principal:
    client = _key_client(user=world.users["ann"], sites=[world.sites[0]])
    return Principal(client, frozenset({world.sites[0].pk}))


def admin_key_unlimited(world: World) -> Principal:
    return Principal(_key_client(user=world.users["ann"]), frozenset({world.sites[0].pk}))


def key_limited_to_a_site_its_user_cannot_read(world: World) -> Principal:
    return Principal(_key_client(user=world.users["ann"], sites=[world.sites[1]]), frozenset())


def revoked_key(world: World) -> Principal:
    client = _key_client(user=world.users["staff"], revoked=True)
    return Principal(client, frozenset(), refused=401)


def expired_key(world: World) -> Principal:
    expired = timezone.now() - timedelta(seconds=1)
    client = _key_client(user=world.users["staff"], expiry_date=expired)
    return Principal(client, frozenset(), refused=401)


PRINCIPALS: list[Callable[[World], Principal]] = [
    pytest.param(admin_of_first, id="admin-of-one-site"),
    pytest.param(viewer_of_second, id="viewer-of-another-site"),
    pytest.param(staff, id="staff"),
    pytest.param(no_site, id="user-without-sites"),
    pytest.param(anonymous, id="anonymous"),
    pytest.param(staff_key_limited_to_third, id="api-key-of-staff-limited-to-one-site"),
    pytest.param(admin_key_limited_to_own_site, id="api-key-limited-to-its-users-site"),
    pytest.param(admin_key_unlimited, id="api-key-not-limited"),
    pytest.param(key_limited_to_a_site_its_user_cannot_read, id="api-key-limited-elsewhere"),
    pytest.param(revoked_key, id="revoked-api-key"),
    pytest.param(expired_key, id="expired-api-key"),
]


@pytest.fixture(autouse=True)
def own_cache(settings):
    """Report cache, site sets and rate counters of this test only."""
    settings.METRIFLOW_RATE_REPORTS = "100000/h"
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def world(tmp_path) -> World:
    generate(tmp_path, "--records", "1500", "--pages", "9", "--sites", "3",
             "--start", START.isoformat())  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()
    sites = list(Site.objects.order_by("id"))
    assert len(sites) == 3
    users = {
        "ann": UserFactory(username="ann"),
        "bob": UserFactory(username="bob"),
        "staff": StaffFactory(username="root"),
        "nobody": UserFactory(username="nobody"),
    }
    MembershipFactory(user=users["ann"], site=sites[0], role=Role.ADMIN)
    MembershipFactory(user=users["bob"], site=sites[1], role=Role.VIEWER)
    return World(sites, users)


def sql_traffic(site_ids, page_id: int | None = None) -> dict:
    """Sums straight from page_hour over the bounds, for only these sites (and page)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(users), 0), coalesce(sum(sessions), 0), coalesce(sum(views), 0), "
            "count(DISTINCT page_id) FILTER (WHERE users IS NOT NULL OR mobile_score IS NOT NULL "
            "OR desktop_score IS NOT NULL) FROM page_hour "
            "WHERE hour >= %s AND hour < %s AND site_id = ANY(%s) "
            "AND (%s::int IS NULL OR page_id = %s::int)",
            [*BOUNDS, list(site_ids), page_id, page_id],
        )
        users, sessions, views, pages = cursor.fetchone()
    return {"users": users, "sessions": sessions, "views": views, "pages": pages}


def sql_coverage(site_id: int) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(hour), max(hour), (SELECT count(*) FROM page WHERE site_id = %s) "
            "FROM page_hour WHERE site_id = %s",
            [site_id, site_id],
        )
        first, last, pages = cursor.fetchone()
    return {"first_hour": first, "last_hour": last, "pages": pages}


def _traffic(body: dict) -> dict:
    return {k: body["traffic"][k] for k in ("users", "sessions", "views")}


def _expected_traffic(site_ids) -> dict:
    return {k: v for k, v in sql_traffic(site_ids).items() if k != "pages"}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_reports(client: APIClient, site_param: str | None, readable: list[int] | None):
    """Each report for ``site=site_param`` (None: no site), whose answer must cover
    exactly ``readable`` (None: the site is not readable, so 404 as if unknown)."""
    scope = "" if site_param is None else f"&site={site_param}"
    urls = {
        "summary": f"/api/reports/summary?{RANGE}{scope}",
        "timeseries": f"/api/reports/timeseries?{RANGE}{scope}&granularity=day",
        "pages": f"/api/reports/pages?{RANGE}{scope}&limit=500",
    }
    answers = {name: client.get(url) for name, url in urls.items()}
    if readable is None:
        for name, response in answers.items():
            assert (response.status_code, response.json()) == (404, NO_SITE), name
        return
    expected = _expected_traffic(readable)
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.content)
    assert _traffic(answers["summary"].json()) == expected
    series = answers["timeseries"].json()["series"]
    assert {k: sum(p["traffic"][k] for p in series) for k in expected} == expected
    pages = answers["pages"].json()
    assert pages["count"] == sql_traffic(readable)["pages"]
    assert {row["page"]["site"] for row in pages["results"]} <= set(readable)
    assert {k: sum(r["traffic"][k] for r in pages["results"]) for k in expected} == expected


@pytest.mark.parametrize("principal_of", PRINCIPALS)
def test_every_endpoint_answers_only_the_sites_a_principal_may_read(world, principal_of):
    principal = principal_of(world)
    client, visible = principal.client, principal.visible
    every = [s.pk for s in world.sites]
    readable = every if visible is None else [pk for pk in every if pk in visible]

    if principal.refused is not None:
        for url in (f"/api/reports/summary?{RANGE}", f"/api/reports/pages?{RANGE}",
                    f"/api/reports/timeseries?{RANGE}&granularity=day",
                    f"/api/reports/pages/{Page.objects.first().pk}?{RANGE}",
                    "/api/sites", f"/api/sites/{world.sites[0].host}"):  # fmt: skip
            assert client.get(url).status_code == principal.refused, url
        return

    # No site parameter: the sites the principal may read (none: zeros, empty lists).
    check_reports(client, None, readable)
    # Each site, named by its host and by its id: its data if readable, else 404.
    for site in world.sites:
        own = site.pk in readable
        for param in (site.host, str(site.pk)):
            check_reports(client, param, [site.pk] if own else None)
    # A site that does not exist answers the same as one that is not the principal's.
    for param in ("nosuch.example.com", "999999"):
        check_reports(client, param, None)

    # One page's report, and page= on the others: 404 outside the readable sites.
    for site in world.sites:
        page = Page.objects.filter(site=site).order_by("id").first()
        one = client.get(f"/api/reports/pages/{page.pk}?{RANGE}")
        filtered = client.get(f"/api/reports/summary?{RANGE}&page={page.pk}")
        if site.pk in readable:
            want = {k: v for k, v in sql_traffic([site.pk], page.pk).items() if k != "pages"}
            assert one.status_code == 200 and _traffic(one.json()) == want
            assert filtered.status_code == 200 and _traffic(filtered.json()) == want
        else:
            assert (one.status_code, one.json()) == (404, NO_PAGE)
            assert (filtered.status_code, filtered.json()) == (404, NO_PAGE)
    assert client.get(f"/api/reports/pages/2000000?{RANGE}").json() == NO_PAGE

    # Discovery: exactly the readable sites, each with its role and its data's hours.
    listed = client.get("/api/sites")
    assert listed.status_code == 200
    sites = listed.json()["sites"]
    assert [s["id"] for s in sites] == sorted(readable, key=lambda pk: Site.objects.get(pk=pk).host)
    for answer in sites:
        coverage = sql_coverage(answer["id"])
        assert answer["first_hour"] == _iso(coverage["first_hour"])
        assert answer["last_hour"] == _iso(coverage["last_hour"])
        assert answer["pages"] == coverage["pages"]
    for site in world.sites:
        detail = client.get(f"/api/sites/{site.host}")
        if site.pk in readable:
            assert detail.status_code == 200
            assert detail.json() == next(s for s in sites if s["id"] == site.pk)
        else:
            assert (detail.status_code, detail.json()) == (404, NO_SITE)
    assert client.get("/api/sites/nosuch.example.com").json() == NO_SITE


def test_roles_in_discovery(world):
    ann = admin_of_first(world).client.get("/api/sites").json()["sites"]
    bob = viewer_of_second(world).client.get("/api/sites").json()["sites"]
    root = staff(world).client.get("/api/sites").json()["sites"]
    assert [s["role"] for s in ann] == ["admin"] and [s["role"] for s in bob] == ["viewer"]
    assert {s["role"] for s in root} == {"staff"} and len(root) == 3
    # A staff member who is also a member shows that membership's role.
    MembershipFactory(user=world.users["staff"], site=world.sites[2], role=Role.VIEWER)
    roles = {s["id"]: s["role"] for s in staff(world).client.get("/api/sites").json()["sites"]}
    assert roles[world.sites[2].pk] == "viewer" and roles[world.sites[0].pk] == "staff"


def test_two_users_asking_the_same_question_never_share_an_answer(world):
    """The same URL, first by ann (site 1), then by bob (site 2), then by ann again:
    the cached answer of one is never served to the other."""
    url = f"/api/reports/summary?{RANGE}"
    ann, bob = admin_of_first(world).client, viewer_of_second(world).client
    first = ann.get(url).json()
    second = bob.get(url).json()
    assert _traffic(first) == _expected_traffic([world.sites[0].pk])
    assert _traffic(second) == _expected_traffic([world.sites[1].pk])
    assert _traffic(ann.get(url).json()) == _traffic(first)
    pages = f"/api/reports/pages?{RANGE}&limit=500"
    ann_pages = {r["page"]["site"] for r in ann.get(pages).json()["results"]}
    bob_pages = {r["page"]["site"] for r in bob.get(pages).json()["results"]}
    assert ann_pages == {world.sites[0].pk} and bob_pages == {world.sites[1].pk}


def test_a_grant_or_revocation_counts_from_the_next_request(world):
    """The user's site set is cached in Redis and dropped when a membership changes."""
    bob = viewer_of_second(world).client
    url = f"/api/reports/summary?{RANGE}&site={world.sites[2].host}"
    assert bob.get(url).status_code == 404
    membership = MembershipFactory(user=world.users["bob"], site=world.sites[2])
    assert _traffic(bob.get(url).json()) == _expected_traffic([world.sites[2].pk])
    membership.delete()
    assert bob.get(url).status_code == 404
    assert [s["id"] for s in bob.get("/api/sites").json()["sites"]] == [world.sites[1].pk]


def test_a_cached_report_of_a_member_costs_no_database_query(world, django_assert_num_queries):
    ann = admin_of_first(world).client
    url = f"/api/reports/summary?{RANGE}&site={world.sites[0].host}"
    assert ann.get(url).status_code == 200  # computed, the site set cached
    with django_assert_num_queries(0):
        assert ann.get(url).status_code == 200


def test_a_credential_limited_to_some_sites_narrows_what_a_user_sees(world):
    """visible_site_ids intersects with the credential's ``site_ids`` (an API key's)."""
    from accounts.selectors import visible_site_ids

    class Limited:
        site_ids = frozenset({world.sites[2].pk})

    class Unlimited:
        site_ids = None

    ann, root = world.users["ann"], world.users["staff"]
    assert visible_site_ids(ann, Unlimited()) == frozenset({world.sites[0].pk})
    assert visible_site_ids(ann, Limited()) == frozenset()
    assert visible_site_ids(root, None) is None
    assert visible_site_ids(root, Limited()) == frozenset({world.sites[2].pk})
