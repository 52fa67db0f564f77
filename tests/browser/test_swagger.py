"""Swagger UI and ReDoc as a person uses them, offline: the page draws from the
project's own static files, "Authorize" takes a token, and "Execute" on the
summary shows the real answer."""

import json
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from ..factories import member_of_every_site
from .conftest import END, START, shot
from .data import load_dataset

pytestmark = [pytest.mark.usefixtures("pipeline_db"), pytest.mark.browser]
PASSWORD = "a-long-Passphrase-1"


@pytest.fixture
def reader(tmp_path):
    load_dataset(tmp_path)
    user = get_user_model().objects.create_user("reader", password=PASSWORD)
    member_of_every_site(user)  # reports cover the sites a user can read
    return user


def access_token(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/auth/token",
        data=json.dumps({"username": "reader", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access"]


def views_between(start, end) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(views), 0) FROM page_hour WHERE hour >= %s AND hour < %s",
            [start, end],
        )
        return int(cursor.fetchone()[0])


def test_swagger_authorize_and_execute_a_summary(page, app_server, reader):
    base = app_server.base
    token = access_token(base)
    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Metriflow reporting API" in page.locator(".swagger-ui .info .title").inner_text()
    assert not page.requests.foreign(), page.requests.foreign()

    page.get_by_role("button", name="Authorize").first.click()
    jwt = page.locator(".modal-ux .auth-container", has_text="jwtAuth")
    jwt.locator("input").fill(token)
    jwt.locator("button", has_text="Authorize").click()  # its accessible name differs
    assert jwt.get_by_text("Authorized").is_visible()
    jwt.locator("button", has_text="Close").click()

    operation = page.locator(".opblock", has=page.locator(".opblock-summary-path",
                             has_text="/api/reports/summary"))  # fmt: skip
    operation.locator(".opblock-summary").first.click()
    operation.get_by_role("button", name="Try it out").click()
    frm, to = START.strftime("%Y-%m-%dT%H:%MZ"), END.strftime("%Y-%m-%dT%H:%MZ")
    operation.locator("tr[data-param-name='from'] input").fill(frm)
    operation.locator("tr[data-param-name='to'] input").fill(to)
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table tbody tr.response")
    live.first.wait_for()
    assert live.first.locator(".response-col_status").inner_text().strip() == "200"
    body = json.loads(live.first.locator(".microlight").first.inner_text())
    assert body["traffic"]["views"] == views_between(START, END) > 0
    shot(page, "swagger-summary-executed")
    assert not page.requests.foreign(), page.requests.foreign()


def test_redoc_draws_offline(page, app_server):
    page.goto(f"{app_server.base}/api/redoc/")
    page.get_by_role("heading", name="Metriflow reporting API").first.wait_for()
    assert page.get_by_text("/api/reports/summary").first.count() == 1
    page.wait_for_load_state("networkidle")
    shot(page, "redoc")
    # The bundle's vendor logo is the only outside address; the policy stops it.
    assert page.requests.blocked == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert not page.requests.foreign(), page.requests.foreign()
    assert not page.requests.failed, page.requests.failed
