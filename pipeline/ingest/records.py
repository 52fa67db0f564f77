"""Validation of GA and PSI records (CONTRACT section 1).

Each validator takes one parsed record and returns the values of its raw row,
or raises :class:`Reject` with a reason a person can act on. Validators are on
the hot path of ingestion: the common case is one chain of cheap type and
range checks; the precise reason is worked out only when that chain fails.
"""

import math
from datetime import UTC, datetime, timedelta

from .schemas import INT_MAX, Unreadable
from .timestamps import HourCache, InvalidTimestamp, hour_of, parse_utc

GA_COUNTS = ("users", "sessions", "views", "bounces")
GA_FIELDS = ("page", "hour", *GA_COUNTS, "engagement_seconds")
PSI_VITALS = ("lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls")
PSI_FIELDS = ("page", "measured_at", "strategy", "performance_score", *PSI_VITALS)
STRATEGIES = frozenset(("mobile", "desktop"))

SEED_PAGE_URL = "https://seed.metriflow.local/page/{}"
_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_MAX_TICKS = 3_155_378_975_999_999_999  # 9999-12-31T23:59:59.9999999


class Reject(ValueError):
    """A record that breaks a rule: kept in the rejects table with this reason."""


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def _check_count(name: str, value: object) -> None:
    if type(value) is not int:
        raise Reject(f"{name} must be an integer, got {_type_name(value)} {value!r:.40}")
    if value < 0:
        raise Reject(f"{name} must be >= 0, got {value}")
    if value > INT_MAX:
        raise Reject(f"{name} is out of range (> {INT_MAX}): {value}")


def _is_number(value: object) -> bool:
    kind = type(value)
    return (kind is float and math.isfinite(value)) or kind is int


def _check_number(name: str, value: object, low: float = 0.0, high: float = math.inf) -> None:
    if not _is_number(value):
        raise Reject(f"{name} must be a number, got {_type_name(value)} {value!r:.40}")
    if not low <= value <= high:
        bounds = f">= {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise Reject(f"{name} must be {bounds}, got {value}")


def _require(record: object, fields: tuple[str, ...]) -> dict:
    if type(record) is Unreadable:
        raise Reject(record.reason)
    if type(record) is not dict:
        raise Reject(f"record must be a JSON object, got {_type_name(record)}")
    for name in fields:
        if name not in record:
            raise Reject(f"missing field {name!r}")
    return record


def _check_page(value: object) -> str:
    if type(value) is not str:
        raise Reject(f"page must be a string, got {_type_name(value)}")
    return value


def validate_ga(record: object, hours: HourCache) -> tuple:
    """(page, hour, users, sessions, views, bounces, engagement_seconds)."""
    try:
        page = record["page"]  # type: ignore[index]
        users = record["users"]  # type: ignore[index]
        sessions = record["sessions"]  # type: ignore[index]
        views = record["views"]  # type: ignore[index]
        bounces = record["bounces"]  # type: ignore[index]
        engagement = record["engagement_seconds"]  # type: ignore[index]
        hour = hours.hour(record["hour"])  # type: ignore[index]
    except InvalidTimestamp as exc:
        _require(record, GA_FIELDS)
        raise Reject(f"hour: {exc}") from None
    except (KeyError, TypeError):
        _require(record, GA_FIELDS)
        raise
    if not (
        type(page) is str
        and type(users) is int
        and type(sessions) is int
        and type(views) is int
        and type(bounces) is int
        and 0 <= users <= INT_MAX
        and 0 <= views <= INT_MAX
        and 0 <= bounces <= sessions <= INT_MAX
        and (
            (type(engagement) is float and 0.0 <= engagement < math.inf)
            or (type(engagement) is int and engagement >= 0)
        )
    ):
        _check_page(page)
        for name in GA_COUNTS:
            _check_count(name, record[name])
        if bounces > sessions:
            raise Reject(f"bounces ({bounces}) must be <= sessions ({sessions})")
        _check_number("engagement_seconds", engagement)
        raise AssertionError("unreachable: the fast check and the reasons disagree")
    return (page, hour, users, sessions, views, bounces, engagement)


def validate_psi(record: object) -> tuple:
    """(page, measured_at, strategy, score, lcp, fcp, inp, ttfb, cls)."""
    try:
        page = record["page"]  # type: ignore[index]
        measured_at = record["measured_at"]  # type: ignore[index]
        strategy = record["strategy"]  # type: ignore[index]
        score = record["performance_score"]  # type: ignore[index]
        get = record.get  # type: ignore[union-attr]
    except (KeyError, TypeError, AttributeError):
        _require(record, PSI_FIELDS[:4])
        raise
    try:
        instant = parse_utc(measured_at)
    except InvalidTimestamp as exc:
        raise Reject(f"measured_at: {exc}") from None
    lcp, fcp, inp, ttfb, cls = (
        get("lcp_ms"),
        get("fcp_ms"),
        get("inp_ms"),
        get("ttfb_ms"),
        get("cls"),
    )
    # JSON numbers parse to finite floats or ints (the parsers refuse NaN and
    # overflow), so a type and a sign check suffice; bool is not int here.
    if not (
        type(page) is str
        and (strategy == "mobile" or strategy == "desktop")
        and (type(score) is float or type(score) is int)
        and 0 <= score <= 100
        and (lcp is None or ((type(lcp) is float or type(lcp) is int) and lcp >= 0))
        and (fcp is None or ((type(fcp) is float or type(fcp) is int) and fcp >= 0))
        and (inp is None or ((type(inp) is float or type(inp) is int) and inp >= 0))
        and (ttfb is None or ((type(ttfb) is float or type(ttfb) is int) and ttfb >= 0))
        and (cls is None or ((type(cls) is float or type(cls) is int) and cls >= 0))
    ):
        _check_page(page)
        if type(strategy) is not str or strategy not in STRATEGIES:
            raise Reject(f"strategy must be 'mobile' or 'desktop', got {strategy!r:.40}")
        _check_number("performance_score", score, 0.0, 100.0)
        for name, value in zip(PSI_VITALS, (lcp, fcp, inp, ttfb, cls), strict=True):
            if value is not None:
                _check_number(name, value)
        raise AssertionError("unreachable: the fast check and the reasons disagree")
    return (page, instant, strategy, score, lcp, fcp, inp, ttfb, cls)


def ticks_to_utc(ticks: object) -> datetime:
    """.NET ticks (100 ns since 0001-01-01T00:00:00 UTC) to a UTC datetime."""
    if type(ticks) is not int or not 0 <= ticks <= _MAX_TICKS:
        raise Reject(f"Date must be .NET ticks (an integer >= 0), got {ticks!r:.40}")
    return _TICKS_EPOCH + timedelta(microseconds=ticks // 10)


def _seed_page(value: object) -> str:
    if type(value) is not int or value < 0:
        raise Reject(f"Page must be an integer >= 0, got {value!r:.40}")
    return SEED_PAGE_URL.format(value)


def validate_seed_ga(record: object, hours: HourCache | None = None) -> tuple:
    """A GA record of the original .NET generator; missing counts are 0."""
    record = _require(record, ("Date", "Page"))
    hour = hour_of(ticks_to_utc(record["Date"]))
    counts = []
    for name in ("Users", "Sessions", "Views"):
        value = record.get(name, 0)
        _check_count(name, value)
        counts.append(value)
    users, sessions, views = counts
    return (_seed_page(record["Page"]), hour, users, sessions, views, 0, 0)


def validate_seed_psi(record: object) -> tuple:
    """A PSI record of the original .NET generator: desktop, only LCP measured."""
    record = _require(record, ("Date", "Page", "PerformanceScore"))
    instant = ticks_to_utc(record["Date"])
    score = record["PerformanceScore"]
    _check_number("PerformanceScore", score, 0.0, 100.0)
    lcp = record.get("LCP_MS")
    if lcp is not None:
        _check_number("LCP_MS", lcp)
    page = _seed_page(record["Page"])
    return (page, instant, "desktop", score, lcp, None, None, None, None)
