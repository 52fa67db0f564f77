"""Opaque cursors of the top-pages report: the offset of the next page of rows."""

from __future__ import annotations

import base64
import binascii


def encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode(cursor: str | None) -> int:
    """The offset of a cursor from ``encode``; ValueError for anything else."""
    if not cursor:
        return 0
    try:
        kind, value = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        offset = int(value)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValueError(f"not a cursor: {cursor!r}") from None
    if kind != "o" or offset < 0:
        raise ValueError(f"not a cursor: {cursor!r}")
    return offset
