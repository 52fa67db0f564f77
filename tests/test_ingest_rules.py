"""Every rule of CONTRACT section 1, accepted and rejected, record by record."""

from datetime import UTC, datetime

import pytest

from pipeline.ingest.canonical import InvalidUrl, canonicalize
from pipeline.ingest.readers import Unreadable
from pipeline.ingest.records import (
    Reject,
    validate_ga,
    validate_psi,
    validate_seed_ga,
    validate_seed_psi,
)
from pipeline.ingest.service import PageResolver
from pipeline.ingest.timestamps import HourCache

GA = {
    "page": "https://Shop.example.com:443/a/?x=1#y",
    "hour": "2024-03-05T10:00:00Z",
    "users": 10,
    "sessions": 12,
    "views": 30,
    "bounces": 4,
    "engagement_seconds": 815.5,
}
PSI = {
    "page": "https://shop.example.com/a",
    "measured_at": "2024-03-05T10:17:42+02:00",
    "strategy": "mobile",
    "performance_score": 87.5,
    "lcp_ms": 2310.0,
    "fcp_ms": 1402,
    "inp_ms": None,
    "ttfb_ms": 512.3,
    "cls": 0.041,
}


def ga(**changes):
    record = {**GA, **changes}
    return {k: v for k, v in record.items() if v is not ...}


def psi(**changes):
    record = {**PSI, **changes}
    return {k: v for k, v in record.items() if v is not ...}


def test_a_valid_ga_record_is_accepted_with_its_utc_hour():
    assert validate_ga(ga(hour="2024-03-05T12:59:59+02:00"), HourCache()) == (
        GA["page"],
        datetime(2024, 3, 5, 10, tzinfo=UTC),
        10,
        12,
        30,
        4,
        815.5,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"users": 0, "sessions": 0, "views": 0, "bounces": 0, "engagement_seconds": 0},
        {"bounces": 12},  # bounces == sessions
        {"engagement_seconds": 3},  # an integer is a number
        {"hour": "2024-03-05 10:00Z"},  # space separator, no seconds
        {"extra": "ignored"},
    ],
)
def test_ga_edge_values_are_accepted(changes):
    validate_ga(ga(**changes), HourCache())


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"users": ...}, "missing field 'users'"),
        ({"page": ...}, "missing field 'page'"),
        ({"hour": ...}, "missing field 'hour'"),
        ({"users": -1}, "users must be >= 0"),
        ({"views": "30"}, "views must be an integer, got string"),
        ({"sessions": 12.0}, "sessions must be an integer, got number"),
        ({"users": True}, "users must be an integer, got boolean"),
        ({"users": None}, "users must be an integer, got null"),
        ({"users": 2**31}, "users is out of range"),
        ({"bounces": 13}, "bounces (13) must be <= sessions (12)"),
        ({"engagement_seconds": -0.5}, "engagement_seconds must be >= 0"),
        ({"engagement_seconds": "1"}, "engagement_seconds must be a number"),
        ({"hour": "2024-03-05T10:00:00"}, "hour: not an ISO-8601 timestamp with Z or an offset"),
        ({"hour": "2024-02-30T10:00:00Z"}, "hour: bad timestamp"),
        ({"hour": "yesterday"}, "hour: not an ISO-8601"),
        ({"hour": 1709632800}, "hour: timestamp must be a string"),
        ({"page": "ftp://shop.example.com/a"}, "page: not an absolute http(s) URL"),
        ({"page": "/a"}, "page: not an absolute http(s) URL"),
        ({"page": "https:///a"}, "page: URL has no host"),
        ({"page": 7}, "page must be a string"),
    ],
)
def test_ga_rule_breaks_are_rejected_with_their_reason(changes, reason):
    with pytest.raises(Reject) as caught:
        values = validate_ga(ga(**changes), HourCache())
        # The URL rule is checked when the page is resolved; a bad URL never
        # reaches the database, so the resolver needs no connection here.
        PageResolver(conn=None).page_id(values[0])
    assert reason in str(caught.value)


@pytest.mark.parametrize("record", [[1, 2], "text", 3, None, Unreadable("invalid JSON: x")])
def test_a_record_that_is_not_an_object_is_rejected(record):
    with pytest.raises(Reject, match=r"JSON object|invalid JSON"):
        validate_ga(record, HourCache())
    with pytest.raises(Reject, match=r"JSON object|invalid JSON"):
        validate_psi(record)


def test_a_valid_psi_record_is_accepted_in_utc():
    assert validate_psi(psi()) == (
        PSI["page"],
        datetime(2024, 3, 5, 8, 17, 42, tzinfo=UTC),
        "mobile",
        87.5,
        2310.0,
        1402,
        None,
        512.3,
        0.041,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"lcp_ms": ..., "fcp_ms": ..., "inp_ms": ..., "ttfb_ms": ..., "cls": ...},  # absent
        {"cls": None, "ttfb_ms": None},
        {"performance_score": 0},
        {"performance_score": 100},
        {"strategy": "desktop"},
        {"cls": 0},
    ],
)
def test_psi_edge_values_are_accepted(changes):
    validate_psi(psi(**changes))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"strategy": "tablet"}, "strategy must be 'mobile' or 'desktop'"),
        ({"strategy": ...}, "missing field 'strategy'"),
        ({"measured_at": ...}, "missing field 'measured_at'"),
        ({"performance_score": ...}, "missing field 'performance_score'"),
        ({"performance_score": 100.5}, "performance_score must be between 0 and 100"),
        ({"performance_score": -1}, "performance_score must be between 0 and 100"),
        ({"performance_score": "90"}, "performance_score must be a number"),
        ({"lcp_ms": -3}, "lcp_ms must be >= 0"),
        ({"cls": -0.01}, "cls must be >= 0"),
        ({"inp_ms": "fast"}, "inp_ms must be a number"),
        ({"ttfb_ms": False}, "ttfb_ms must be a number, got boolean"),
        ({"measured_at": "2024-03-05"}, "measured_at: not an ISO-8601"),
        ({"measured_at": "2024-03-05T25:00:00Z"}, "measured_at: bad timestamp"),
    ],
)
def test_psi_rule_breaks_are_rejected_with_their_reason(changes, reason):
    with pytest.raises(Reject) as caught:
        validate_psi(psi(**changes))
    assert reason in str(caught.value)


def test_seed_records_map_to_contract_values():
    # .NET: new DateTime(2024, 1, 1).Ticks == 638_396_640_000_000_000; + 9:33:20
    ticks = 638_396_640_000_000_000 + (9 * 3600 + 33 * 60 + 20) * 10_000_000
    assert validate_seed_ga({"Date": ticks, "Page": 7, "Users": 3, "Views": 9}) == (
        "https://seed.metriflow.local/page/7",
        datetime(2024, 1, 1, 9, tzinfo=UTC),
        3,
        0,  # missing Sessions is 0
        9,
        0,
        0,
    )
    assert validate_seed_psi({"Date": ticks, "Page": 7, "PerformanceScore": 88}) == (
        "https://seed.metriflow.local/page/7",
        datetime(2024, 1, 1, 9, 33, 20, tzinfo=UTC),
        "desktop",
        88,
        None,
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"Date": -1, "Page": 1}, "Date must be .NET ticks"),
        ({"Date": "2024", "Page": 1}, "Date must be .NET ticks"),
        ({"Date": 1, "Page": "one"}, "Page must be an integer"),
        ({"Date": 1, "Page": 1, "Users": -2}, "Users must be >= 0"),
        ({"Page": 1}, "missing field 'Date'"),
    ],
)
def test_seed_rule_breaks_are_rejected(record, reason):
    with pytest.raises(Reject) as caught:
        validate_seed_ga(record)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "url", "host", "path"),
    [
        (
            "https://Shop.example.com:443/a/?x=1#y",
            "https://shop.example.com/a",
            "shop.example.com",
            "/a",
        ),
        ("HTTP://Example.com", "http://example.com/", "example.com", "/"),
        ("http://example.com:80/", "http://example.com/", "example.com", "/"),
        ("https://example.com:8443/A/b//", "https://example.com:8443/A/b", "example.com", "/A/b"),
        ("https://user:pw@example.com/p", "https://example.com/p", "example.com", "/p"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x", "[::1]", "/x"),
    ],
)
def test_canonical_pages(raw, url, host, path):
    assert canonicalize(raw) == (url, host, path)


@pytest.mark.parametrize(
    "raw",
    ["ftp://example.com/", "example.com/a", "https://", "https://exa mple.com/", "http://[::1"],
)
def test_urls_that_are_not_absolute_http_are_refused(raw):
    with pytest.raises(InvalidUrl):
        canonicalize(raw)
