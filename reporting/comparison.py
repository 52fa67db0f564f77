"""Period comparison of the summary and timeseries reports (``compare=...``).

``previous_period`` compares a range with the range of the same length that ends
where it starts; ``previous_year`` with the same range one calendar year earlier
(docs/api.md, "Period comparison"). Both ranges are read through the report's own
cached selector, so a warm comparison costs two cache reads; this module only
derives the compared range, pairs the two answers and computes the relative
change of every metric, ``(current - previous) / previous``, rounded to
``PRECISION["change"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from .metrics import rounded

PREVIOUS_PERIOD = "previous_period"
PREVIOUS_YEAR = "previous_year"
MODES = (PREVIOUS_PERIOD, PREVIOUS_YEAR)
# The parts of an answer that hold metrics; a change is given for each number in them.
METRIC_GROUPS = ("traffic", "performance")

# read(start, end, encoded) -> the report's answer over [start, end), as its selector
# gives it: with ``encoded`` possibly an orjson.Fragment, otherwise a decoded dict.
Read = Callable[[datetime, datetime, bool], object]


def year_earlier(at: datetime) -> datetime:
    """The same hour one calendar year earlier; Feb 29 becomes Feb 28."""
    try:
        return at.replace(year=at.year - 1)
    except ValueError:  # Feb 29 of a leap year
        return at.replace(year=at.year - 1, day=28)


def previous_range(mode: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The range ``[start, end)`` is compared with.

    previous_period: ``[start - (end - start), start)``. previous_year: each bound one
    calendar year earlier, a bound on Feb 29 on Feb 28 at the same hour, except an end
    on Feb 29 of a range that starts before that day: it becomes the end of Feb 28
    (Mar 1 00:00), so that the previous range holds all of the Feb 28 the range covers
    and is never empty.
    """
    if mode == PREVIOUS_PERIOD:
        return start - (end - start), start
    if mode != PREVIOUS_YEAR:
        raise ValueError(f"unknown comparison {mode!r}; one of {', '.join(MODES)}")
    previous_start, previous_end = year_earlier(start), year_earlier(end)
    end_is_leap_day = (end.month, end.day) == (2, 29)
    if end_is_leap_day and start < end.replace(hour=0):
        previous_end = previous_end.replace(hour=0) + timedelta(days=1)
    return previous_start, previous_end


def relative_change(current, previous) -> float | None:
    """``(current - previous) / previous``, rounded; None when previous is 0 or None or
    current is None."""
    if current is None or not previous:
        return None
    return rounded((current - previous) / previous, "change")


def _change_tree(current, previous):
    if isinstance(current, dict):
        return {key: _change_tree(value, previous[key]) for key, value in current.items()}
    return relative_change(current, previous)


def change(current: dict, previous: dict) -> dict:
    """The relative change of every metric of ``current`` against ``previous``, in the
    shape of their ``traffic`` and ``performance``."""
    return {group: _change_tree(current[group], previous[group]) for group in METRIC_GROUPS}


def _decoded(read: Read, start: datetime, end: datetime) -> dict:
    return read(start, end, False)


def summary(read: Read, start: datetime, end: datetime, mode: str | None, encoded: bool):
    """The summary over ``[start, end)``; with ``mode``, also ``previous`` (the summary
    over the compared range) and ``change``. Without ``mode`` the selector's answer
    is returned as it is."""
    if mode is None:
        return read(start, end, encoded)
    current = _decoded(read, start, end)
    previous = _decoded(read, *previous_range(mode, start, end))
    return {**current, "previous": previous, "change": change(current, previous)}


def _paired_points(mode: str, current: list[dict], previous: list[dict]) -> list[dict | None]:
    """For each current bucket the previous range's bucket it is compared with, or None.

    previous_year: the bucket that starts a calendar year earlier (``year_earlier`` of
    the start; both Feb 28 and Feb 29 of a leap year meet Feb 28). previous_period: the
    bucket at the same position in the previous range's series.
    """
    if mode == PREVIOUS_PERIOD:
        return [previous[i] if i < len(previous) else None for i in range(len(current))]
    by_start = {_parse(point["start"]): point for point in previous}
    return [by_start.get(year_earlier(_parse(point["start"]))) for point in current]


def _parse(text: str) -> datetime:
    """A time of a decoded answer (ISO, ``Z`` for UTC)."""
    return datetime.fromisoformat(text)


def timeseries(read: Read, start: datetime, end: datetime, mode: str | None, encoded: bool):
    """The timeseries over ``[start, end)``; with ``mode`` each point also carries
    ``previous`` (its compared bucket: start, end and metrics; null when the previous
    range has none) and ``change``, and the answer ``previous`` (the compared range's
    ``from``, ``to`` and ``freshness``). Without ``mode`` the selector's answer is
    returned as it is."""
    if mode is None:
        return read(start, end, encoded)
    current = _decoded(read, start, end)
    previous = _decoded(read, *previous_range(mode, start, end))
    series = []
    for point, compared in zip(
        current["series"], _paired_points(mode, current["series"], previous["series"]), strict=True
    ):
        if compared is None:
            series.append({**point, "previous": None, "change": None})
        else:
            series.append({**point, "previous": compared, "change": change(point, compared)})
    return {
        **current,
        "series": series,
        "previous": {key: previous[key] for key in ("from", "to", "freshness")},
    }


def _nulls(value):
    if isinstance(value, dict):
        return {key: _nulls(item) for key, item in value.items()}
    return None


def csv_points(body: dict) -> list[dict]:
    """The timeseries' points as CSV rows: a point without a compared bucket gets the
    same ``previous.*`` and ``change.*`` columns as the others, empty."""
    series = body["series"]
    template = next((p for p in series if p.get("previous") is not None), None)
    if template is None:
        return series
    empty_previous, empty_change = _nulls(template["previous"]), _nulls(template["change"])
    return [
        {**p, "previous": empty_previous, "change": empty_change}
        if p.get("previous") is None
        else p
        for p in series
    ]
