"""Canonical pages (CONTRACT section 1).

Lower-case scheme and host, default port dropped, query and fragment dropped,
trailing slash dropped except for the root path ``/``. The site of a page is
its host. ``https://Shop.example.com:443/a/?x=1#y`` is
``https://shop.example.com/a``.

Decisions where the contract is silent: user information (``user:pw@``) is
dropped; a non-default port is kept in the URL but not in the site; the path
keeps its case and its percent-encoding as written.
"""

import re
from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


class InvalidUrl(ValueError):
    """The text is not an absolute http(s) URL."""


class CanonicalPage(NamedTuple):
    url: str
    host: str
    path: str


def canonicalize(raw: str) -> CanonicalPage:
    if _FORBIDDEN.search(raw):
        raise InvalidUrl("URL contains whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl("not an absolute http(s) URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidUrl("URL has no host")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    return CanonicalPage(f"{scheme}://{netloc}{path}", host, path)
