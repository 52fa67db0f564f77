"""Time helpers: parsing the start option, hour labels, .NET ticks."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
_TICKS_EPOCH = dt.datetime(1, 1, 1, tzinfo=UTC)
TICKS_PER_SECOND = 10_000_000
TICKS_PER_HOUR = 3600 * TICKS_PER_SECOND
MAX_TICKS = 3_155_378_975_999_999_999  # 9999-12-31T23:59:59.9999999


def parse_start(text: str) -> dt.datetime:
    """Parse an ISO date or datetime; naive values are UTC; truncated to the hour."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"invalid --start {text!r}: expected an ISO date or datetime") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(minute=0, second=0, microsecond=0)


def hour_at(start: dt.datetime, hour_index: int) -> dt.datetime:
    return start + hour_index * HOUR


def iso_hour(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:00:00Z`` for a UTC datetime."""
    return value.strftime("%Y-%m-%dT%H:00:00Z")


def ticks(value: dt.datetime) -> int:
    """.NET ticks (100 ns units since 0001-01-01T00:00:00 UTC) of an aware datetime."""
    delta = value - _TICKS_EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def from_ticks(value: int) -> dt.datetime:
    return _TICKS_EPOCH + dt.timedelta(microseconds=value // 10)
