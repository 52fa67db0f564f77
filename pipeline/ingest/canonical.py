"""Canonical pages (CONTRACT section 1).

Lower-case scheme and host, default port dropped, query and fragment dropped,
trailing slash dropped except for the root path ``/``. The site of a page is
its host. ``https://Shop.example.com:443/a/?x=1#y`` is
``https://shop.example.com/a``.

Decisions where the contract is silent: user information (``user:pw@``) is
dropped; a non-default port is kept in the URL but not in the site; the path
keeps its case and its percent-encoding as written.

Hosts are stored as A-labels (punycode), lower case: the host is mapped by
UTS 46 (full-width letters become ASCII, upper case lower) and checked by
IDNA 2008, so ``bücher.example`` and ``xn--bcher-kva.example`` are one site.
A host with an empty label (``a..b``), a label starting or ending with a
hyphen, a format character such as a zero-width space, or a code point IDNA
does not allow is refused; one trailing dot (a fully qualified name) is dropped.
"""

import re
import unicodedata
from typing import NamedTuple
from urllib.parse import urlsplit

import idna

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
    host = f"[{host}]" if ":" in host else normalize_host(host)  # IPv6 literal, or a name
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    return CanonicalPage(f"{scheme}://{netloc}{path}", host, path)


def normalize_host(host: str) -> str:
    """The host as lower-case A-labels, or InvalidUrl (see the module's docstring)."""
    if any(unicodedata.category(char) == "Cf" for char in host):
        raise InvalidUrl(f"host {host[:80]!r} contains an invisible (format) character")
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidUrl(f"invalid host {host[:80]!r}: {exc}") from None
