"""The browsable API for a person: a session login, indented answers, a form per report."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from pipeline import stages
from pipeline.ingest import ingest_files

from .contract import generate
from .factories import member_of_every_site

PASSWORD = "correct-Horse-battery-9"
START = datetime(2024, 12, 30, tzinfo=UTC)
RANGE = "from=2024-12-30T02:00:00Z&to=2025-01-02T00:00:00Z"
BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
# Each report and the query parameters its form must offer.
FORMS = {
    "summary": ("from", "to", "site", "page"),
    "timeseries": ("from", "to", "site", "page", "granularity"),
    "pages": ("from", "to", "site", "page", "path_prefix", "order_by", "limit", "cursor"),
    "page": ("from", "to"),
}


@pytest.fixture
def dataset(tmp_path, pipeline_db):
    generate(tmp_path, "--records", "800", "--pages", "4", "--sites", "2",
             "--start", START.isoformat())  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()


@pytest.fixture(autouse=True)
def own_cache(settings):
    """Report cache and rate counters of this test only (a key prefix of its own)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def user(transactional_db, request):
    """A reader of every site of the test's data set (reports cover a user's sites)."""
    if "dataset" in request.fixturenames:
        request.getfixturevalue("dataset")  # the sites first
    reader = get_user_model().objects.create_user("reader", password=PASSWORD)
    member_of_every_site(reader)
    return reader


def report_url(name: str) -> str:
    from pipeline.models import Page

    if name == "page":
        return f"/api/reports/pages/{Page.objects.order_by('id').first().id}?{RANGE}"
    extra = "&granularity=day" if name == "timeseries" else ""
    return f"/api/reports/{name}?{RANGE}{extra}"


def shown_json(page: str) -> str:
    """The answer as the page shows it: the response block's text after its headers."""
    block = re.search(r'<div class="response-info".*?<pre class="prettyprint">(.*?)</pre>', page,
                      re.S).group(1)  # fmt: skip
    text = html.unescape(re.sub(r"<[^>]+>", "", block))  # urlize's links and the header spans
    return text[text.index("{") :]


def bearer(user) -> APIClient:
    pair = APIClient().post("/api/auth/token", {"username": user.username, "password": PASSWORD})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")
    return client


@pytest.mark.parametrize("name", list(FORMS))
def test_a_logged_in_session_sees_an_indented_report_with_its_form(dataset, user, name):
    jwt = bearer(user)
    url = report_url(name)
    answer = jwt.get(url)  # also caches the answer: the page below is served from the cache
    assert answer.status_code == 200
    browser = Client()
    assert browser.login(username="reader", password=PASSWORD)
    page = browser.get(url, **BROWSER)
    assert page.status_code == 200, page.content[:500]
    assert page["Content-Type"].startswith("text/html")
    body = page.content.decode()
    text = shown_json(body)
    assert json.loads(text) == answer.json()
    lines = text.splitlines()
    assert len(lines) > 50 and lines[1].startswith('    "') and not lines[1].startswith("     ")
    for field in FORMS[name]:
        assert re.search(rf'<label[^>]*for="id_{field}"', body), field
        assert re.search(rf'<(input|select)[^>]*id="id_{field}"[^>]*name="{field}"', body), field
    assert re.search(r'<form id="report-query"[^>]*method="get"', body)
    assert 'value="2024-12-30T02:00:00Z"' in body  # the form shows the range asked for


def test_the_form_submits_a_report_with_its_empty_fields_left_out(dataset, user):
    browser = Client()
    browser.force_login(user)
    # What the browser sends for the form with site, page, path_prefix and cursor left empty.
    query = f"{RANGE}&site=&page=&path_prefix=&order_by=-users&limit=3&cursor="
    page = browser.get(f"/api/reports/pages?{query}", **BROWSER)
    assert page.status_code == 200
    shown = json.loads(shown_json(page.content.decode()))
    assert shown["order_by"] == "-users" and len(shown["results"]) == 3
    assert '<option value="-users" selected>' in page.content.decode()


def test_a_bad_range_is_shown_with_the_form_to_correct_it(user):
    browser = Client()
    browser.force_login(user)
    page = browser.get("/api/reports/summary?from=2025-02-01&to=2025-01-01", **BROWSER)
    assert page.status_code == 400
    body = page.content.decode()
    assert json.loads(shown_json(body)) == {"to": ["must be after from"]}
    assert 'name="from"' in body and 'value="2025-02-01"' in body


def test_anonymous_gets_401_json_and_the_login_page_works(user):
    anonymous = Client()
    refused = anonymous.get("/api/reports/summary?from=2025-01-01&to=2025-01-02")
    assert refused.status_code == 401
    assert refused["Content-Type"] == "application/json"
    assert "credentials" in refused.json()["detail"]
    login = Client(enforce_csrf_checks=True)
    form = login.get("/api/auth/browser/login/?next=/api/reports/summary")
    assert form.status_code == 200 and b'name="username"' in form.content
    token = login.cookies["csrftoken"].value
    done = login.post(
        "/api/auth/browser/login/",
        {"username": "reader", "password": PASSWORD, "csrfmiddlewaretoken": token,
         "next": "/api/reports/summary"},
    )  # fmt: skip
    assert done.status_code == 302 and done["Location"] == "/api/reports/summary"
    assert login.get("/api/reports/summary?from=2025-01-01&to=2025-01-02").status_code == 200


def test_unsafe_methods_with_a_session_need_the_csrf_token(user):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="reader", password=PASSWORD)
    url = "/api/reports/summary?from=2025-01-01&to=2025-01-02"
    refused = client.post(url)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get("/api/auth/browser/login/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    # With the token the session authenticates; the report then refuses the method.
    assert client.post(url, HTTP_X_CSRFTOKEN=token).status_code == 405
    # Logging out is an unsafe request too: refused without the token, done with it.
    assert client.post("/api/auth/browser/logout/").status_code == 403
    assert client.get(url).status_code == 200
    assert client.post("/api/auth/browser/logout/", HTTP_X_CSRFTOKEN=token).status_code == 200
    assert client.get(url).status_code == 401


def test_jwt_answers_compact_json_and_indents_only_when_asked(dataset, user):
    jwt = bearer(user)
    url = report_url("summary")
    first = jwt.get(url)  # computed
    again = jwt.get(url)  # from the cache, copied as it is
    assert first.status_code == again.status_code == 200
    assert first.content == again.content == orjson.dumps(orjson.loads(first.content))
    assert b"\n" not in again.content
    indented = jwt.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.status_code == 200
    assert json.loads(indented.content) == first.json()
    assert indented.content.decode().splitlines()[1].startswith('  "')
