"""Non-canonical but equivalent spellings of page URLs.

Every spelling maps back to the canonical page under the contract's rules:
lower-case scheme and host, default port dropped, query and fragment dropped,
trailing slash dropped except for the root path ``/``.
"""

from __future__ import annotations

import numpy as np

VARIANT_KINDS = (
    "upper_host",
    "capitalised_host",
    "default_port",
    "trailing_slash",
    "query",
    "fragment",
    "combined",
    "upper_scheme",
)


def _split(url: str) -> tuple[str, str, str]:
    scheme, rest = url.split("://", 1)
    slash = rest.find("/")
    return scheme, rest[:slash], rest[slash:]


def variants(url: str) -> list[str]:
    """The spellings of a canonical ``url``, in the order of ``VARIANT_KINDS``."""
    scheme, host, path = _split(url)
    port = ":443" if scheme == "https" else ":80"
    root = path == "/"
    cap = ".".join(label[:1].upper() + label[1:] for label in host.split("."))
    slash = path if root else path + "/"
    return [
        f"{scheme}://{host.upper()}{path}",
        f"{scheme}://{cap}{path}",
        f"{scheme}://{host}{port}{path}",
        f"{scheme}://{host}/?utm_source=newsletter" if root else f"{scheme}://{host}{slash}",
        f"{scheme}://{host}{path}?utm_source=newsletter&utm_medium=email",
        f"{scheme}://{host}{path}#reviews",
        f"{scheme}://{cap}{port}{slash}?utm_campaign=spring#top",
        f"{scheme.upper()}://{host}{path}",
    ]


def url_table(urls: list[str]) -> np.ndarray:
    """Object array of ``len(urls) * (1 + len(VARIANT_KINDS))`` URLs as bytes.

    Entry ``page * width + code`` is the canonical URL for code 0 and the
    ``code``-th variant otherwise.
    """
    rows = []
    for url in urls:
        rows.append(url.encode())
        rows.extend(v.encode() for v in variants(url))
    table = np.empty(len(rows), dtype=object)
    table[:] = rows
    return table


TABLE_WIDTH = 1 + len(VARIANT_KINDS)
