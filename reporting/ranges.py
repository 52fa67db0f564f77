"""Cutting a date range into the coarsest whole units inside it.

``[from, to)`` at hour precision becomes runs of whole years, months, days,
intervals and hours; each run is read from its table (agg_yearly,
agg_monthly, agg_daily, agg_interval, page_hour). The cut is greedy from the
left: at each point the coarsest unit that starts there and fits is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

LEVELS = ("year", "month", "day", "interval", "hour")


@dataclass(frozen=True)
class Piece:
    level: str
    start: datetime
    end: datetime


def _next(level: str, at: datetime, interval_hours: int) -> datetime:
    if level == "year":
        return at.replace(year=at.year + 1)
    if level == "month":
        return (
            at.replace(year=at.year + 1, month=1)
            if at.month == 12
            else at.replace(month=at.month + 1)
        )
    if level == "day":
        return at + timedelta(days=1)
    if level == "interval":
        return at + timedelta(hours=interval_hours)
    return at + timedelta(hours=1)


def _aligned(level: str, at: datetime, interval_hours: int) -> bool:
    if at.minute or at.second or at.microsecond:
        return False
    if level == "hour":
        return True
    if level == "interval":
        return at.hour % interval_hours == 0
    if at.hour:
        return False
    if level == "day":
        return True
    if at.day != 1:
        return False
    return level == "month" or at.month == 1


def unit_start(level: str, at: datetime, interval_hours: int) -> datetime:
    """The start of the unit of ``level`` that contains ``at``."""
    at = at.replace(minute=0, second=0, microsecond=0)
    if level == "hour":
        return at
    if level == "interval":
        return at.replace(hour=at.hour - at.hour % interval_hours)
    at = at.replace(hour=0)
    if level == "day":
        return at
    at = at.replace(day=1)
    return at if level == "month" else at.replace(month=1)


def unit_end(level: str, at: datetime, interval_hours: int) -> datetime:
    return _next(level, unit_start(level, at, interval_hours), interval_hours)


def decompose(start: datetime, end: datetime, interval_hours: int) -> list[Piece]:
    """Runs of whole units, coarsest first at each point, consecutive units merged."""
    pieces: list[Piece] = []
    at = start
    while at < end:
        for level in LEVELS:
            if not _aligned(level, at, interval_hours):
                continue
            following = _next(level, at, interval_hours)
            if following <= end:
                if pieces and pieces[-1].level == level and pieces[-1].end == at:
                    pieces[-1] = Piece(level, pieces[-1].start, following)
                else:
                    pieces.append(Piece(level, at, following))
                at = following
                break
        else:  # not even hour-aligned: the caller validates hour precision
            raise ValueError(f"range bound {at.isoformat()} is not on a whole hour")
    return pieces
