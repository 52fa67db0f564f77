"""ISO-8601 timestamps of the input files (CONTRACT section 1).

A timestamp must carry ``Z`` or a UTC offset; it is converted to UTC. The
parsed values are cached per text, because every page of an hour repeats the
same GA ``hour`` string.
"""

import re
from datetime import UTC, datetime

# Date, 'T' or ' ', time to at least minutes; optional seconds and fraction;
# then Z or an offset. Python's fromisoformat does the range checks.
_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})\Z")


class InvalidTimestamp(ValueError):
    pass


def parse_utc(text: object) -> datetime:
    """The UTC instant of an ISO-8601 timestamp with ``Z`` or an offset."""
    # Fast path: the common 'YYYY-MM-DDTHH:MM:SSZ', which fromisoformat checks fully.
    if type(text) is str and len(text) == 20 and text[19] == "Z" and text[10] == "T":
        try:
            return datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidTimestamp(f"bad timestamp {text!r}: {exc}") from None
    if type(text) is not str:
        raise InvalidTimestamp(f"timestamp must be a string, got {type(text).__name__}")
    if not _SHAPE.match(text):
        raise InvalidTimestamp(f"not an ISO-8601 timestamp with Z or an offset: {text[:40]!r}")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestamp(f"bad timestamp {text[:40]!r}: {exc}") from None


def hour_of(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


class HourCache:
    """Maps a timestamp text to its UTC hour, cached (GA repeats each hour per page).

    With a :class:`TimeRange`, an hour outside it is InvalidTimestamp (never cached).
    """

    __slots__ = ("_cache", "span")

    def __init__(self, span: "TimeRange | None" = None) -> None:
        self._cache: dict[str, datetime] = {}
        self.span = span or UNBOUNDED

    def hour(self, text: object) -> datetime:
        try:
            return self._cache[text]  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        hour = self.span.check("hour", hour_of(parse_utc(text)))
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[text] = hour  # type: ignore[index]
        return hour


class TimeRange:
    """The supported instants: ``low <= t < high`` (setting ``METRIFLOW_INGEST_TIME_RANGE``)."""

    __slots__ = ("high", "low")

    def __init__(self, low: datetime, high: datetime) -> None:
        self.low, self.high = low, high

    @classmethod
    def from_text(cls, low: str, high: str) -> "TimeRange":
        return cls(
            datetime.fromisoformat(low).replace(tzinfo=UTC),
            datetime.fromisoformat(high).replace(tzinfo=UTC),
        )

    def check(self, name: str, value: datetime) -> datetime:
        if not self.low <= value < self.high:
            raise InvalidTimestamp(
                f"{name} {value.isoformat()} is outside the supported range "
                f"{self.low.date()} to {self.high.date()}"
            )
        return value


UNBOUNDED = TimeRange(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
