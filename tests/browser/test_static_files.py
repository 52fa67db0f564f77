"""Static files are served by the app itself under gunicorn: hashed names,
compressed, cached for good, and no page names another host."""

import re
import urllib.request

import pytest

# The server reads the test database (created only for tests that ask for it).
pytestmark = [pytest.mark.django_db, pytest.mark.browser]
ASSET = re.compile(r"""(?:src|href)=["']([^"'#]+)["']""")


def get(url: str, **headers):
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/", "/api/redoc/"])
def test_pages_load_their_assets_from_the_app_only(app_server, path):
    status, headers, body = get(app_server.base + path)
    assert status == 200
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assets = [a for a in ASSET.findall(body.decode()) if not a.startswith(("/api/", "/admin/"))]
    assert assets, "the page names no asset at all"
    for asset in assets:
        assert asset.startswith("/static/"), f"{path} loads {asset} from elsewhere"
        assert re.search(r"\.[0-9a-f]{12}\.(css|js|png|svg|ico)$", asset), f"not hashed: {asset}"
        status, _, content = get(app_server.base + asset)
        assert status == 200 and content, asset


def test_hashed_files_are_compressed_and_cached_for_good(app_server):
    _, _, html = get(app_server.base + "/admin/login/")
    css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', html.decode())
    assert css, "the admin's stylesheet is not linked by its hashed name"
    status, headers, body = get(app_server.base + css.group(1), **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"]
    assert "max-age=315360000" in headers["Cache-Control"]
    assert body[:2] == b"\x1f\x8b"


def test_the_favicon_is_the_projects_own(app_server):
    status, headers, body = get(app_server.base + "/favicon.ico")
    assert status == 200  # after the redirect to its hashed static name
    assert headers["Content-Type"].startswith("image/svg+xml")
    assert body.startswith(b"<svg")
