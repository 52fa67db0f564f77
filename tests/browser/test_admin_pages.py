"""The admin as a staff member sees it: styled, logged in through its form, the
ingest batches with their hours and the pipeline ledger listed."""

import pytest
from django.contrib.auth import get_user_model

from pipeline import stages
from pipeline.models import IngestBatch, PipelineLedger, PipelineRun

from .conftest import shot
from .data import load_dataset

pytestmark = [pytest.mark.usefixtures("pipeline_db"), pytest.mark.browser]
PASSWORD = "a-long-Passphrase-1"


@pytest.fixture
def staff(tmp_path):
    load_dataset(tmp_path)
    return get_user_model().objects.create_user(
        "ops", password=PASSWORD, is_staff=True, is_superuser=True
    )


def log_in(page, base):
    page.goto(f"{base}/admin/")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#site-name")


def test_admin_is_styled_and_lists_the_ledger_and_the_run_history(page, app_server, staff):
    base = app_server.base
    # A second run of one window: the ledger keeps one row, the history two.
    window = PipelineLedger.objects.filter(stage="daily").order_by("window_start").first()
    stages.mark_range_dirty(window.window_start, window.window_end)
    stages.drain(stages.TIME_STAGES)
    page.goto(f"{base}/admin/login/")
    # The stylesheet is served (hashed, by the app itself) and applied.
    header = page.locator("#header")
    assert header.evaluate("e => getComputedStyle(e).backgroundColor") not in (
        "rgba(0, 0, 0, 0)",
        "rgb(255, 255, 255)",
    )
    css = [u for u in page.requests.urls if u.endswith(".css")]
    assert any("/static/admin/css/base." in u for u in css), css
    assert all(len(u.rsplit("/", 1)[-1].split(".")) == 3 for u in css), css  # name.hash.css
    log_in(page, base)
    assert page.get_by_text("Site administration").is_visible()
    shot(page, "admin-index")

    # The ledger: one row per stage x window, its current state.
    page.get_by_role("link", name="Pipeline windows").first.click()
    page.wait_for_selector("#result_list")
    ledger = PipelineLedger.objects.all()
    assert page.locator("#result_list tbody tr").count() == ledger.count()
    table = page.locator("#result_list").inner_text()
    for stage in ("Staged", "Page", "Interval", "Daily", "Monthly", "Yearly"):
        assert f"\t{stage}\t" in table, stage
    shot(page, "admin-ledger")
    assert_fits(page)

    # The history: one row per run; the re-run window shows attempts 1 and 2.
    page.get_by_role("link", name="Pipeline runs").first.click()
    page.wait_for_selector("#result_list")
    runs = PipelineRun.objects.all()
    assert runs.count() == ledger.count() + sum(
        1 for entry in ledger if entry.stage != "staged" and entry.runs.count() == 2
    )
    assert page.locator("#result_list tbody tr").count() == runs.count()
    page.locator("#changelist-filter").get_by_role("link", name="Daily").click()
    page.wait_for_selector("#result_list")
    attempts = page.locator("#result_list tbody tr td.field-attempt").all_inner_texts()
    expected = PipelineRun.objects.filter(ledger__stage="daily").values_list("attempt", flat=True)
    assert sorted(attempts) == sorted(str(a) for a in expected)
    assert "2" in attempts
    shot(page, "admin-run-history")
    assert_fits(page)
    assert not page.requests.foreign(), page.requests.foreign()
    assert not page.requests.failed, page.requests.failed


def test_admin_batches_show_the_hours_they_cover(page, app_server, staff):
    log_in(page, app_server.base)
    page.goto(f"{app_server.base}/admin/pipeline/ingestbatch/")
    page.wait_for_selector("#result_list")
    table = page.locator("#result_list").inner_text()
    headers = page.locator("#result_list thead").inner_text().lower()
    assert "hours covered" in headers, headers
    for batch in IngestBatch.objects.all():
        assert batch.file_name.rsplit("/", 1)[-1] in table
        assert f"{batch.first_hour:%Y-%m-%d %H:%M}" in table, (batch.first_hour, table)
        assert f"{batch.last_hour:%Y-%m-%d %H:%M}" in table, (batch.last_hour, table)
    shot(page, "admin-batches")
    assert_fits(page)


def assert_fits(page) -> None:
    """Every column of the list is visible at 1280 px: neither the page nor the
    table scrolls sideways."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, width
    results = page.locator(".results")
    scroll, client = results.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert scroll <= client, f"the list scrolls sideways: {scroll} > {client} px"
