"""DRF's browsable API as a person uses it: log in with the form, read a report
as indented JSON, change its range in the parameters form and see the new answer."""

import json
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model

from ..factories import member_of_every_site
from .conftest import END, START, shot
from .data import load_dataset
from .test_swagger import views_between

pytestmark = [pytest.mark.usefixtures("pipeline_db"), pytest.mark.browser]
PASSWORD = "a-long-Passphrase-1"


@pytest.fixture
def reader(tmp_path):
    load_dataset(tmp_path)
    user = get_user_model().objects.create_user("reader", password=PASSWORD)
    member_of_every_site(user)  # reports cover the sites a user can read
    return user


def shown_json(page) -> dict:
    """The answer as the page shows it (DRF prints it in a <pre>, after the headers)."""
    text = page.locator(".response-info pre").inner_text()
    return json.loads(text[text.index("{") :])


def test_log_in_read_a_report_and_change_its_range(page, app_server, reader):
    base = app_server.base
    report = f"/api/reports/summary?from={START:%Y-%m-%dT%H:%MZ}&to={END:%Y-%m-%dT%H:%MZ}"
    page.goto(f"{base}{report}")
    assert page.locator(".response-info").inner_text().count("401") >= 1  # not logged in yet

    page.goto(f"{base}/api/auth/browser/login/?next={quote(report)}")
    page.get_by_label("Username").fill("reader")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#report-query")
    assert page.url.startswith(f"{base}/api/reports/summary")

    text = page.locator(".response-info pre").inner_text()
    assert '\n    "traffic": {\n' in text, text[:400]  # indented, one field a line
    answer = shown_json(page)
    assert answer["traffic"]["views"] == views_between(START, END) > 0
    shot(page, "browsable-summary")

    # The parameters form: a shorter range, submitted as a person would.
    form = page.locator("#report-query")
    assert form.get_by_label("From").input_value() == f"{START:%Y-%m-%dT%H:%MZ}"
    later = START.replace(day=31)
    form.get_by_label("From").fill(f"{later:%Y-%m-%dT%H:%MZ}")
    form.get_by_role("button", name="Show report").click()
    page.wait_for_url(f"**from={later:%Y-%m-%dT%H}*")
    answer = shown_json(page)
    assert answer["from"].startswith(f"{later:%Y-%m-%dT%H:%M}")
    assert answer["traffic"]["views"] == views_between(later, END) > 0
    assert not page.requests.foreign(), page.requests.foreign()
    shot(page, "browsable-summary-changed")
