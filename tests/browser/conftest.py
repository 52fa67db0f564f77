"""Browser tests: playwright (the Python package) drives Debian's chromium headless
against the API served by gunicorn, as ``make api`` serves it (whitenoise, hashed
static files from ``collectstatic``), on the test database.

Every page is opened as a person would: typed logins, clicks, what is visible.
Each test leaves a screenshot of what it saw in ``var/screenshots/`` and, when it
fails, one of the moment of failure in ``var/browser-failures/``. Every request
a page makes is recorded; a page that asks another host for anything fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings

from ..conftest import REPO_ROOT, database_url
from ..processes import gunicorn

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
FAILURES = REPO_ROOT / "var" / "browser-failures"
# Flags for a headless chromium on a machine without a network beyond localhost.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START = datetime(2024, 12, 30, tzinfo=UTC)
END = datetime(2025, 1, 2, tzinfo=UTC)


def chromium_path() -> str:
    found = os.environ.get("METRIFLOW_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed: run `bash scripts/browser.sh` (make test does)")
    return found


@dataclass
class Server:
    base: str
    log: Path


@pytest.fixture(scope="session")
def app_server(django_db_setup, tmp_path_factory) -> Iterator[Server]:
    """gunicorn serving the test database with the test settings (DEBUG off, as in
    production): static files come from the hashed, compressed copies in
    STATIC_ROOT."""
    from django.db import connection

    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if not manifest.exists():
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=REPO_ROOT, check=True,
        )  # fmt: skip
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {
        "DJANGO_SETTINGS_MODULE": "metriflow.settings.test",
        "DATABASE_URL": database_url(connection.settings_dict["NAME"]),
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "METRIFLOW_PIPELINE_TRIGGER": "false",
        "GUNICORN_ACCESS_LOG": str(log),
    }
    with log.open("ab") as sink, contextlib.ExitStack() as stack:
        try:
            base = stack.enter_context(gunicorn(env, workers=2, log=sink))
            with urllib.request.urlopen(f"{base}/api/health", timeout=10):
                pass
        except urllib.error.HTTPError as exc:  # it answers, but a service is down
            pytest.fail(f"/api/health answers {exc.code}: {exc.read()[:500]!r}")
        except AssertionError as exc:
            pytest.fail(f"gunicorn did not start ({exc}):\n{log.read_text()[-3000:]}")
        yield Server(base, log)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the tests' own
    # ORM calls are synchronous all the same, so Django's guard is lifted while
    # a browser module runs (and only then: `check --deploy` refuses the variable).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
            )
            yield instance
            instance.close()
    finally:  # also when chromium is missing: later tests' subprocesses must not inherit it
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@dataclass
class Requests:
    """Every URL the page asked for, those that answered 4xx/5xx, and those the
    browser stopped before they left it (Metriflow's Content-Security-Policy)."""

    base: str
    urls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests that went to another host (CSP-blocked ones never left)."""
        return [
            u
            for u in self.urls
            if not u.startswith((self.base, "data:", "blob:")) and u not in self.blocked
        ]


@pytest.fixture
def page(browser, app_server, request):
    """A fresh browser context 1280 px wide; screenshots kept under var/."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    seen = Requests(app_server.base)
    tab.on("request", lambda r: seen.urls.append(r.url))
    tab.on(
        "response",
        lambda r: seen.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    tab.on(
        "requestfailed",
        lambda r: seen.blocked.append(r.url) if (r.failure or "").lower() == "csp" else None,
    )
    tab.requests = seen
    yield tab
    name = request.node.name.replace("/", "_")
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    target = (FAILURES if failed else SCREENSHOTS) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tab.screenshot(path=str(target), full_page=True)
    finally:
        context.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def shot(tab, name: str) -> None:
    """A screenshot of a step worth looking at, in var/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
